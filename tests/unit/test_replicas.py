"""Replicas on one PostgreSQL: a host is claimed by one replica at a time, whatever they race; a dead replica's work is
taken over after its lease, never re-run blindly; a replica that loses its hold stops its workers; pauses hold every
claim; the singletons run on one replica; intake by several replicas loses and doubles nothing. And on SQLite: one
serve only."""
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from remediator.engine.errors import ConfigError
from remediator.engine.intake.inbox import Received, parse_payload
from remediator.engine.intake.ingester import IngestLoop
from remediator.engine.model.states import IncidentState
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store import leases
from remediator.engine.store.leader import HOUSEKEEPER, Leadership, single_serve
from remediator.engine.store.queries import get_delivery
from remediator.engine.store.tables import AlertRow, AuditEvent, Delivery, Incident, Run, utcnow
from tests.conftest import FIXTURES
from tests.engines import new_engine

pytestmark = pytest.mark.unit
HOSTS = ["app-server-01", "app-server-02", "api-server-01"]


def _replica(tmp_path, url: str, name: str, **settings) -> Engine:
    return new_engine(Settings(data_dir=tmp_path / name, database_url=url, webhook_url="http://127.0.0.1:9/hook", **settings))


@pytest.fixture
def replicas(tmp_path, postgres_url) -> tuple[Engine, Engine]:
    return _replica(tmp_path, postgres_url, "a"), _replica(tmp_path, postgres_url, "b")


def _add(engine: Engine, n: int, host: str, state: IncidentState = IncidentState.RECEIVED, name: str = "q") -> list[str]:
    start = utcnow()
    ids = [f"{name}-{host}-{i}" for i in range(n)]
    with engine.store.write() as s:
        for i, incident_id in enumerate(ids):
            s.add(Incident(id=incident_id, correlation_key=f"{name}|{host}|{i}", alertname=name, host=host,
                           severity="critical", priority=0, state=state, labels={}, annotations={},
                           created_at=start + timedelta(milliseconds=i), updated_at=start))
    return ids


def _host(engine: Engine, incident_id: str) -> str:
    with engine.store.read() as s:
        return s.get(Incident, incident_id).host


def test_racing_replicas_never_hold_one_host_twice(replicas):
    for host in HOSTS:
        _add(replicas[0], 10, host)
    claimed: list[tuple[str, str]] = []
    go = threading.Barrier(8)

    def claim(engine: Engine) -> None:
        go.wait()
        for _ in range(10):
            if (got := engine.pipeline.claim()) is not None:
                claimed.append((engine.pipeline.owner, got))

    threads = [threading.Thread(target=claim, args=(replicas[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hosts = [_host(replicas[0], incident_id) for _, incident_id in claimed]
    assert sorted(hosts) == sorted(HOSTS), claimed           # one incident per host, across both replicas
    with replicas[0].store.read() as s:
        held = dict(s.execute(select(leases.Lease.key, leases.Lease.owner)).all())
    assert set(held) == set(HOSTS) and set(held.values()) <= {r.pipeline.owner for r in replicas}


def test_a_dead_replicas_real_run_is_taken_over_after_its_lease_and_never_rerun_blindly(replicas):
    a, b = replicas
    (incident_id,) = _add(a, 1, "app-server-01")
    assert a.pipeline.claim() == incident_id
    with a.store.write() as s:
        inc = s.get(Incident, incident_id)
        inc.state, inc.entry = IncidentState.EXECUTING, "restart_service"
    a.pipeline.records.begin_run(incident_id, f"{incident_id}-a1-apply", "restart_service", "apply", {"unit": "webapp"},
                                 ["app-server-01"])
    assert b.pipeline.take_over() == []                       # a's lease is live: its work, not b's
    assert b.pipeline.claim() is None
    with a.store.write() as s:                                 # a died: nobody renews its lease
        s.execute(update(leases.Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert b.pipeline.take_over() == [incident_id]
    with b.store.read() as s:
        inc = s.get(Incident, incident_id)
        run = s.execute(select(Run).where(Run.incident_id == incident_id)).scalar_one()
        assert s.execute(select(func.count()).select_from(leases.Lease)).scalar() == 0
    assert inc.state == IncidentState.RECEIVED and inc.interrupted == "apply"
    assert "a person decides before it runs again" in inc.reason and run.status == "interrupted"
    assert b.pipeline.claim() == incident_id                  # b works it again: diagnosed, checked, a person decides


def test_a_replica_that_lost_its_lease_stops_its_workers_and_starts_them_again(tmp_path, postgres_url):
    a = _replica(tmp_path, postgres_url, "a", lease_ttl_s=3)
    (incident_id,) = _add(a, 1, "app-server-01", IncidentState.CHECKING, name="held")
    with a.store.write() as s:   # this replica holds the host (as its claim left it)...
        s.add(leases.Lease(key="app-server-01", incident_id=incident_id, owner=a.pipeline.owner, claimed_at=utcnow(),
                           expires_at=utcnow() + timedelta(seconds=3)))
    a.pipeline._working.add(incident_id)
    a.pipeline.start()
    try:
        with a.store.write() as s:   # ...and another replica took it over
            s.execute(leases.Lease.__table__.delete())
        deadline = time.monotonic() + 5
        while a.pipeline.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not a.pipeline.alive() and "took over incident(s) " + incident_id in a.pipeline.fenced
        assert a.healthy()[1]["workers"].startswith("fenced: another replica took over")
        a.pipeline._working.discard(incident_id)   # its worker gave up (cancelled): the next renewal is whole
        deadline = time.monotonic() + 5
        while not a.pipeline.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.pipeline.alive() and a.pipeline.fenced == ""
    finally:
        a.pipeline.stop()


def test_pause_holds_every_claim_at_once_and_a_scope_only_its_hosts(replicas):
    a, b = replicas
    app = _add(a, 2, "app-server-01")
    (api,) = _add(a, 1, "api-server-01")
    leases.pause(a.store, leases.ALL, "oncall", "change freeze")
    assert a.pipeline.claim() is None and b.pipeline.claim() is None
    assert leases.resume(a.store, leases.ALL, "oncall")
    leases.pause(a.store, "app", "oncall", "app is being migrated")      # an inventory group
    assert b.pipeline.claim() == api
    assert a.pipeline.claim() is None                                   # app-server-01 is in app: held
    assert leases.resume(b.store, "app", "oncall") and not leases.resume(b.store, "app", "oncall")
    assert a.pipeline.claim() == app[0]
    with a.store.read() as s:
        kinds = [k for (k,) in s.execute(select(AuditEvent.kind).where(AuditEvent.kind.like("claims.%"))).all()]
    assert kinds == ["claims.paused", "claims.resumed", "claims.paused", "claims.resumed"]


def test_the_singletons_run_on_one_replica_and_move_when_it_goes(replicas):
    a, b = replicas
    first, second = Leadership(a.store, HOUSEKEEPER), Leadership(b.store, HOUSEKEEPER)
    assert first.held() and not second.held()
    assert first.held() and not second.held()   # still: held on first's own connection
    first.release()                             # as its death does: the connection closes
    # the server frees the lock when the closed connection's backend has gone: a moment later on a busy machine
    deadline = time.monotonic() + 10
    while not second.held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.held() and not first.held()
    second.release()



def test_intake_on_two_replicas_takes_every_delivery_in_once_even_out_of_order(replicas):
    a, b = replicas
    body = parse_payload((FIXTURES / "payloads" / "correlated-firing.json").read_bytes())
    other = parse_payload((FIXTURES / "payloads" / "mixed-severity.json").read_bytes())
    loops = [IngestLoop(r.inbox, r.inventory, r.settings, report=lambda _b: None, stuck=lambda _w: None) for r in (a, b)]
    with a.inbox.store.write() as slow:
        (late,) = a.inbox.write(slow, [Received(body, "alertmanager")])       # a's id first, committed last
        with b.inbox.store.write() as s:
            (early,) = b.inbox.write(s, [Received(other, "alertmanager")])
        assert early > late
        loops[1].take_in_next()                                                # b's loop moves what is committed
    for _ in range(3):                                                         # both loops, whichever comes first
        for loop in loops:
            loop.take_in_next()
    with a.store.read() as s:
        taken = dict(s.execute(select(Delivery.id, Delivery.ingested_at.is_not(None))).all())
        alerts = s.execute(select(func.count()).select_from(AlertRow)).scalar()
    assert taken == {late: True, early: True}
    assert alerts == len(body.alerts) + len(other.alerts)                     # none twice
    assert a.inbox.waiting() == {}


def test_one_serve_per_sqlite_store_and_no_roles_on_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'remediator.db'}"
    held = single_serve(url)
    with pytest.raises(ConfigError, match="more than one replica needs a shared PostgreSQL"):
        single_serve(url)
    held.close()
    single_serve(url).close()                   # free again once the first is gone
    single_serve(f"sqlite:///{tmp_path / 'new' / 'var' / 'remediator.db'}").close()   # a first start: no dir yet
    with pytest.raises(ConfigError, match="role worker needs the replicas to share a PostgreSQL store"):
        new_engine(Settings(data_dir=tmp_path, role="worker"))


class _MovedMeanwhile:
    """The inbox store as get_delivery() reads it, with the ingester's move landing right before that read."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def read(self):
        self.engine.inbox.move(10_000, 0)
        return self.engine.inbox.store.read()


def test_a_delivery_moved_between_the_two_reads_is_found(tmp_path, postgres_url):
    """GET /deliveries/{id} read `deliveries` (not there yet), then the inbox (gone meanwhile): 404 for a stored
    delivery, on PostgreSQL (found by bench/replicas.py; SQLite's inbox keeps a moved row a while).
    The row reaches `deliveries` before it leaves the inbox."""
    engine = new_engine(Settings(data_dir=tmp_path, database_url=postgres_url, webhook_url="http://127.0.0.1:9/hook"))
    body = parse_payload((FIXTURES / "payloads" / "correlated-firing.json").read_bytes())
    with engine.inbox.store.write() as s:
        (delivery_id,) = engine.inbox.write(s, [Received(body, "alertmanager")])
    found = get_delivery(engine.store, delivery_id, _MovedMeanwhile(engine))
    assert found.id == delivery_id and found.alerts == len(body.alerts)
