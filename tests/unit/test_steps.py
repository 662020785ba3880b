"""The pipeline's steps through the store, without Ansible (tests/fakes.py plays the runs): the fix that
verifies, the fix that does not, the person who approves the dry run, and the dry run that drifts after."""
import json

import pytest
from sqlalchemy import select

from remediator.engine.model.states import ApprovalState, IncidentState
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identity, Role
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.tables import Approval, AuditEvent, Incident, Run
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import RecordingNotifier, ScriptedExecutor, take_in, work_all

pytestmark = [pytest.mark.unit, pytest.mark.store]
DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [], "started": True}
UP = {**DOWN, "active_state": "active", "sub_state": "running"}
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
ALICE = Identity(name="alice", role=Role.APPROVER, approver_id="a1")


def _engine(tmp_path, database_url, reports, **settings) -> tuple[Engine, ScriptedExecutor, RecordingNotifier]:
    executor = ScriptedExecutor({"service_status": reports}, {"restart_service": CHECK})
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, verify_interval_s=0,
                             slack_webhook_url="http://127.0.0.1:9/slack", **settings), executor=executor)
    return engine, executor, RecordingNotifier(engine.store)


def _incident(engine, incident_id) -> Incident:
    with engine.store.read() as s:
        return s.get(Incident, incident_id)


def _runs(engine, incident_id) -> list[str]:
    with engine.store.read() as s:
        return [r.mode for r in s.execute(select(Run).where(Run.incident_id == incident_id).order_by(Run.id)).scalars()]


def test_a_fix_that_verifies(tmp_path, database_url):
    engine, executor, notes = _engine(tmp_path, database_url, [DOWN, UP])
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.RESOLVED, inc.reason
    assert inc.proposal.entry == "restart_service" and inc.proposal.params["unit"] == "webapp"
    assert inc.evidence["service_status"]["report"]["active_state"] == "failed"     # what it read before it acted
    assert executor.calls == [("service_status", "diagnose"), ("restart_service", "check"),
                              ("restart_service", "apply"), ("service_status", "diagnose")]
    assert _runs(engine, incident_id) == ["diagnose", "check", "apply", "verify"]
    assert "verified on attempt 1" in inc.reason
    assert notes.events("slack") == ["fixed"]
    assert engine.metrics.registry.get_sample_value("remediator_incidents_closed_total", {"state": "resolved"}) == 1


def test_a_fix_that_does_not_verify_escalates_saying_what_is_still_wrong(tmp_path, database_url):
    engine, _, notes = _engine(tmp_path, database_url, [DOWN], verify_attempts=2)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.ESCALATED
    assert "not fixed after 2 checks" in inc.reason and "active_state is 'failed', expected 'active'" in inc.reason
    assert _runs(engine, incident_id) == ["diagnose", "check", "apply", "verify", "verify"]
    assert notes.events("slack") == ["escalated"]


def test_a_person_approves_the_dry_run_and_exactly_it_runs(tmp_path, database_url):
    engine, executor, notes = _engine(tmp_path, database_url, [DOWN, UP])
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-db-primary-01.json").read_bytes()).incidents
    work_all(engine)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.AWAITING_APPROVAL                       # a database host: a person decides
    assert ("restart_service", "apply") not in executor.calls
    with engine.store.read() as s:
        (approval,) = s.execute(select(Approval).where(Approval.incident_id == incident_id)).scalars()
    assert approvals.vote(engine.store, engine.lifecycle, approval.id, ALICE, approve=True) == ApprovalState.APPROVED
    work_all(engine)
    assert _incident(engine, incident_id).state == IncidentState.RESOLVED
    assert _runs(engine, incident_id) == ["diagnose", "check", "check", "apply", "verify"]   # checked again first
    assert notes.events("slack") == ["awaiting_approval", "fixed"]


def test_a_dry_run_that_drifts_after_approval_is_asked_again_then_escalated(tmp_path, database_url):
    engine, executor, notes = _engine(tmp_path, database_url, [DOWN], approval_drift_max=2)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-db-primary-01.json").read_bytes()).incidents
    work_all(engine)
    for round_ in range(2):
        # the host changed since the person read the dry run: the next check shows another diff
        executor.checks["restart_service"] = [{**e, "event_data": {**e["event_data"], "res": {
            **e["event_data"].get("res", {}), "diff": {"before": f"round {round_}", "after": "x"}}}} for e in CHECK]
        with engine.store.read() as s:
            pending = s.execute(select(Approval).where(Approval.incident_id == incident_id,
                                                       Approval.state == ApprovalState.PENDING)).scalar_one()
        approvals.vote(engine.store, engine.lifecycle, pending.id, ALICE, approve=True)
        work_all(engine)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.ESCALATED and "it keeps changing" in inc.reason
    assert ("restart_service", "apply") not in executor.calls                  # nothing ran for real
    with engine.store.read() as s:
        kinds = [e.kind for e in s.execute(select(AuditEvent).where(AuditEvent.incident_id == incident_id)).scalars()]
    assert kinds.count("incident.awaiting_approval") == 2
    assert notes.events("slack") == ["awaiting_approval", "awaiting_approval", "escalated"]


class _Killed(BaseException):
    """remediator SIGKILLed right there: nothing after it runs, and its open transaction is lost."""


def test_a_kill_as_the_real_run_is_recorded_leaves_no_incident_cut_off_by_a_run_that_never_began(tmp_path,
                                                                                              database_url, monkeypatch):
    """The move to EXECUTING and the run's start commit together: killed between them, the restarted remediator
    would say a real run was cut off (and ask a person) where none began (tests/chaos/test_kill.py caught it)."""
    engine, executor, _ = _engine(tmp_path, database_url, [DOWN, DOWN, UP])
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    append = audit.append

    def killed_at_the_run_start(session, kind, *args, **kwargs):
        if kind == "run.apply.started":
            raise _Killed()
        return append(session, kind, *args, **kwargs)

    monkeypatch.setattr(audit, "append", killed_at_the_run_start)
    with pytest.raises(_Killed):
        work_all(engine)
    monkeypatch.setattr(audit, "append", append)
    assert ("restart_service", "apply") not in executor.calls
    assert _incident(engine, incident_id).state != IncidentState.EXECUTING
    engine.pipeline.take_over(every_held=True)          # what the restarted remediator does first
    work_all(engine)
    with engine.store.read() as s:
        kinds = [e.kind for e in s.execute(select(AuditEvent).where(AuditEvent.incident_id == incident_id)).scalars()]
    assert "incident.interrupted" not in kinds and "incident.requeued" in kinds
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.RESOLVED and not inc.interrupted, inc.reason   # no person was needed
    assert kinds.count("run.apply.started") == 1 and _runs(engine, incident_id).count("apply") == 1


def test_a_real_run_cut_off_by_a_restart_is_ended_on_its_hosts_before_the_incident_is_worked_again(tmp_path,
                                                                                                 database_url):
    """remediator died during a real run: what that run started on the host did not. The incident, worked again
    after the restart, first ends the cut-off run there (tests/integration: the host side), then diagnoses again."""
    engine, executor, _ = _engine(tmp_path, database_url, [DOWN, UP])
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    with engine.store.write() as s:
        row = s.get(Incident, incident_id)
        row.state, row.entry = IncidentState.EXECUTING, "restart_service"
    ident = f"{incident_id}-a1-apply"
    engine.pipeline.records.begin_run(incident_id, ident, "restart_service", "apply", {"unit": "webapp"},
                                      ["app-server-01"])
    engine.pipeline.recover()
    work_all(engine)
    assert executor.calls[:2] == [(ident, "stop"), ("service_status", "diagnose")]
    with engine.store.read() as s:
        ended = s.execute(select(AuditEvent).where(AuditEvent.kind == "run.apply.ended_on_hosts")).scalar_one()
    assert ended.incident_id == incident_id and ended.data["ident"] == ident and ended.data["hosts"] == ["app-server-01"]
    assert _incident(engine, incident_id).state == IncidentState.AWAITING_APPROVAL   # and a person decides
