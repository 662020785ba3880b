"""N8 of the second review: leases were judged on each replica's own clock. A replica whose clock ran 20 s ahead
saw another replica's freshly renewed lease as expired, took its incident over and claimed the host, while the
owner went on working it. Sent here as the reviewer sent it: two replicas on one PostgreSQL, the second 20 s ahead."""
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from remediator.engine.errors import ConfigError
from remediator.engine.model.states import IncidentState
from remediator.engine.pipeline import worker
from remediator.engine.settings import Settings
from remediator.engine.store import leases
from remediator.engine.store.tables import Incident, utcnow
from tests.engines import new_engine

pytestmark = [pytest.mark.security, pytest.mark.unit]


def _replica(tmp_path, url, name):
    return new_engine(Settings(data_dir=tmp_path / name, database_url=url, webhook_url="http://127.0.0.1:9/hook"))


def _incident(incident_id: str, alertname: str) -> Incident:
    return Incident(id=incident_id, correlation_key=f"{alertname}|app-server-01", alertname=alertname,
                    host="app-server-01", severity="critical", priority=0, state=IncidentState.RECEIVED, labels={},
                    annotations={}, created_at=utcnow(), updated_at=utcnow())


def _ahead(seconds: float):
    return lambda: datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=seconds)


def test_a_replica_whose_clock_runs_ahead_takes_nothing_live_over(tmp_path, postgres_url, monkeypatch):
    a, b = _replica(tmp_path, postgres_url, "a"), _replica(tmp_path, postgres_url, "b")
    with a.store.write() as session:
        session.add(_incident("live-1", "ServiceDown"))
    assert a.pipeline.claim() == "live-1"               # a works it, its lease fresh (15 s)
    for module in (worker, leases):                     # b's clock: 20 s ahead of a's and of the database's
        monkeypatch.setattr(module, "utcnow", _ahead(20))
    assert b.pipeline.take_over() == []                 # before: ['live-1']
    with b.store.write() as session:                    # a second incident on the same host waits for a
        session.add(_incident("live-2", "DiskSpaceLow"))
    assert b.pipeline.claim() is None                   # before: b claimed the host
    with a.store.read() as session:
        held = session.execute(select(leases.Lease.key, leases.Lease.owner)).all()
    assert held == [("app-server-01", a.pipeline.owner)]
    assert a.pipeline.claim() is None and leases.renew(a.store, a.pipeline.owner, 15) == {"live-1"}   # a still holds it


def test_a_replica_whose_clock_is_off_refuses_to_start(tmp_path, postgres_url, monkeypatch):
    b = _replica(tmp_path, postgres_url, "b")
    monkeypatch.setattr(leases, "utcnow", _ahead(20))
    with pytest.raises(ConfigError, match=r"clock is 2\d\.\d s off the database's \(at most 5 s"):
        b.start()
    assert not b.pipeline.alive()


def test_a_worker_that_froze_past_its_lease_writes_nothing_after_the_take_over(tmp_path, postgres_url):
    """N8's fencing: replica a claims an incident and freezes (a GC pause, a stopped VM) past its lease; b takes the
    incident over and claims it. When a thaws, its next write for that incident is refused (LeaseLost) and b's work
    stands. Before: a's write went through, over b's."""
    from sqlalchemy import update

    from remediator.engine.errors import LeaseLost
    a, b = _replica(tmp_path, postgres_url, "a"), _replica(tmp_path, postgres_url, "b")
    with a.store.write() as session:
        session.add(_incident("frozen-1", "ServiceDown"))
    assert a.pipeline.claim() == "frozen-1"
    with a.store.write() as session:   # a stops renewing: its lease runs out
        session.execute(update(leases.Lease).values(expires_at=leases.db_now(session) - timedelta(seconds=1)))
    assert b.pipeline.take_over() == ["frozen-1"]
    assert b.pipeline.claim() == "frozen-1"
    with leases.fencing(a.pipeline.owner, "frozen-1"), pytest.raises(LeaseLost, match="another replica took it over"):
        a.pipeline.records.close("frozen-1", IncidentState.ESCALATED, "a, thawed, closes what b now works")
    with a.store.read() as session:
        assert session.get(Incident, "frozen-1").state == IncidentState.DIAGNOSING          # b's claim, untouched
    with leases.fencing(b.pipeline.owner, "frozen-1"):                                        # the control: b writes
        b.pipeline.records.close("frozen-1", IncidentState.ESCALATED, "b closes it")
    with b.store.read() as session:
        assert session.get(Incident, "frozen-1").state == IncidentState.ESCALATED
