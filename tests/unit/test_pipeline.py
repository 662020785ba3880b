"""The work queue without running Ansible: claim order, one incident per host, restart recovery,
approval expiry; and the schema the migrations build matches the models."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from remediator.engine.model.states import IncidentState
from remediator.engine.people.approvals import expire_due
from remediator.engine.store import leases
from remediator.engine.store.tables import Approval, AuditEvent, Base, Incident, OutboxMessage, Run, utcnow
from tests.conftest import FIXTURES
from tests.fakes import take_in

pytestmark = [pytest.mark.unit, pytest.mark.store]


@pytest.fixture
def engine(make_engine):
    return make_engine(webhook_url="http://127.0.0.1:9/hook")


def _post(engine, name):
    return take_in(engine, (FIXTURES / "payloads" / name).read_bytes())


def _state(engine, incident_id):
    with engine.store.read() as s:
        return s.get(Incident, incident_id).state


def test_most_severe_first_and_one_incident_per_host(engine):
    backlog = _post(engine, "mixed-severity.json").incidents        # warning on app-server-02, critical on api-server-01
    corr = _post(engine, "correlated-firing.json").incidents          # app-server-01, app-server-02 (critical)
    first, second, third = engine.pipeline.claim(), engine.pipeline.claim(), engine.pipeline.claim()
    # Critical before warning, oldest first among equals.
    assert first == backlog[1]
    assert {second, third} == set(corr)
    # The warning's host (app-server-02) is held by a ServiceDown incident: it waits, whatever the entry.
    assert engine.pipeline.claim() is None
    assert _state(engine, backlog[0]) == "received"
    with engine.store.write() as s:
        s.get(Incident, corr[1]).state = IncidentState.RESOLVED
    assert engine.pipeline.claim() is None                             # its worker still holds the host's lease
    leases.release(engine.store, engine.pipeline.owner, corr[1])       # as work() does when it is done
    assert engine.pipeline.claim() == backlog[0]


def test_on_one_host_the_cause_is_worked_first(engine):
    """A full disk stopped the service, which now fails requests: three alerts on app-server-01. The disk first
    (its runbook's order 10, though only a warning), then the service (50), then the error-rate report (80, though
    critical), which then reads the host after the fixes; another host's alert is not held back by them."""
    errors, down, disk, other = _post(engine, "full-disk-stopped-the-service.json").incidents
    assert [engine.pipeline.claim(), engine.pipeline.claim(), engine.pipeline.claim()] == [disk, other, None]
    for done, then in ((disk, down), (down, errors)):
        with engine.store.write() as s:
            s.get(Incident, done).state = IncidentState.RESOLVED
        leases.release(engine.store, engine.pipeline.owner, done)
        assert engine.pipeline.claim() == then


def test_restart_requeues_what_had_not_run_and_marks_what_was_cut_off(engine):
    ids = _post(engine, "correlated-firing.json").incidents
    with engine.store.write() as s:
        s.get(Incident, ids[0]).state = IncidentState.CHECKING
        executing = s.get(Incident, ids[1])
        executing.state, executing.entry = IncidentState.EXECUTING, "restart_service"
    run_id = engine.pipeline.records.begin_run(ids[1], f"{ids[1]}-a1-apply", "restart_service", "apply", {"unit": "webapp"},
                                        ["app-server-02"])
    engine.pipeline.recover()
    assert _state(engine, ids[0]) == "received"
    assert _state(engine, ids[1]) == "received"           # worked again from the start: never re-run blindly
    with engine.store.read() as s:
        cut = s.get(Incident, ids[1])
        run = s.get(Run, run_id)
        marked = s.execute(select(AuditEvent).where(AuditEvent.kind == "incident.interrupted")).scalar_one()
    assert cut.interrupted == "apply" and "a person decides before it runs again" in cut.reason
    assert run.status == "interrupted" and run.finished_at is not None
    assert marked.incident_id == ids[1] and marked.data["runs"] == [f"{ids[1]}-a1-apply"]


def test_pending_approvals_expire_and_say_so(engine):
    (incident_id,) = _post(engine, "refiring-later.json").incidents
    with engine.store.write() as s:
        s.get(Incident, incident_id).state = IncidentState.AWAITING_APPROVAL
        s.add(Approval(id="a1", incident_id=incident_id, preview_digest="d", state="pending", expires_at=utcnow()))
    assert expire_due(engine.store, engine.lifecycle) == 1
    assert _state(engine, incident_id) == "expired"
    with engine.store.read() as s:
        assert s.get(Approval, "a1").state == "expired"
        assert [n.event for n in s.execute(select(OutboxMessage)).scalars()] == ["expired"]


def test_migrations_build_exactly_the_models(engine):
    with engine.store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_serve_logs_every_incident_step_on_one_line_each_after_it_committed(engine, caplog):
    """An operator's first day: serve logged nothing about incidents. Now every step is a line of its own (from the
    audit event, once committed), what one alert adds to an open incident is left out, and alert text cannot forge a
    line of its own (a newline in a label stays inside its quoted field)."""
    import json
    import logging
    body = json.loads((FIXTURES / "payloads" / "unlisted-unit-down-app-server-01.json").read_text())
    body["alerts"][0]["annotations"]["description"] = "down\nINFO remediator.incidents: incident.resolved incident=forged"
    with caplog.at_level(logging.INFO, logger="remediator.incidents"):
        (incident_id,) = take_in(engine, json.dumps(body).encode()).incidents
        engine.pipeline.work(engine.pipeline.claim())
    lines = [r.getMessage() for r in caplog.records if r.name == "remediator.incidents"]
    assert lines[0].startswith(f"incident.opened incident={incident_id} alertname=") and 'host="app-server-01"' in lines[0]
    assert any(line.startswith(f"incident.claimed incident={incident_id}") for line in lines), lines
    (closed,) = [line for line in lines if line.startswith(f"incident.escalated incident={incident_id}")]
    assert 'to="escalated"' in closed and "not on app-server-01's remediator_services" in closed
    assert all("\n" not in line for line in lines) and not any("incident=forged" in line.split(" ")[1] for line in lines)
    with engine.store.write() as s:                   # a transaction rolled back logs nothing
        from remediator.engine.store import audit
        audit.append(s, "incident.requeued", {"reason": "never committed"}, incident_id)
        s.rollback()
    assert not any("never committed" in r.getMessage() for r in caplog.records)
