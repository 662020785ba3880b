"""Evidence gates (remediator/engine/decide/gates.py): a runbook reads its diagnostics before it acts. A ServiceDown for a
unit that runs restarts nothing and says what it read; a stopped one is restarted; right before a real run long
after planning (an approval) the evidence is read again; a gate that is wrong does not load."""
import json
import shutil

import pytest
from sqlalchemy import select

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide.planners import load_runbooks
from remediator.engine.errors import ConfigError
from remediator.engine.model.states import ApprovalState, IncidentState
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identity, Role
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Approval, Incident
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor, take_in, work_all

pytestmark = pytest.mark.unit
DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [], "started": True}
UP = {**DOWN, "active_state": "active", "sub_state": "running", "since": "Thu 2026-11-12 09:14:02 UTC"}
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
ALICE = Identity(name="alice", role=Role.APPROVER, approver_id="a1")


def _run(tmp_path, reports, payload, **settings):
    executor = ScriptedExecutor({"service_status": reports}, {"restart_service": CHECK})
    engine = new_engine(Settings(data_dir=tmp_path, verify_interval_s=0, **settings), executor=executor)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / payload).read_bytes()).incidents
    work_all(engine)
    return engine, executor, incident_id


def _incident(engine, incident_id) -> Incident:
    with engine.store.read() as s:
        return s.get(Incident, incident_id)


def test_a_unit_that_runs_is_not_restarted_and_the_incident_says_what_was_read(tmp_path):
    engine, executor, incident_id = _run(tmp_path, [UP], "webapp-down-app-server-01.json")
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.ESCALATED
    assert "the unit runs and answers (the alert's probe or route is what broke" in inc.reason
    assert "active_state=active" in inc.reason and "sub_state=running" in inc.reason
    assert executor.calls == [("service_status", "diagnose")]               # read, nothing checked or run
    assert inc.evidence["service_status"]["report"]["active_state"] == "active"   # kept for the person


def test_the_control_a_stopped_unit_is_restarted_reading_once(tmp_path):
    engine, executor, incident_id = _run(tmp_path, [DOWN, UP], "webapp-down-app-server-01.json")
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.RESOLVED, inc.reason
    assert "the evidence shows it: status: unit=webapp, load_state=loaded, active_state=failed" in inc.proposal.rationale
    # the gate's reading is the entry's own diagnostic too (read once), then the check, the run and the verify
    assert executor.calls == [("service_status", "diagnose"), ("restart_service", "check"),
                              ("restart_service", "apply"), ("service_status", "diagnose")]


def test_after_an_approval_the_evidence_is_read_again_and_a_recovered_unit_is_left_alone(tmp_path):
    # db-primary-01: a person approves; meanwhile the unit came back by itself
    engine, executor, incident_id = _run(tmp_path, [DOWN, UP], "webapp-down-db-primary-01.json", gate_fresh_s=0)
    assert _incident(engine, incident_id).state == IncidentState.AWAITING_APPROVAL
    with engine.store.read() as s:
        (approval,) = s.execute(select(Approval).where(Approval.incident_id == incident_id)).scalars()
    assert approvals.vote(engine.store, engine.lifecycle, approval.id, ALICE, approve=True) == ApprovalState.APPROVED
    work_all(engine)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.ESCALATED and "read again right before the real run" in inc.reason
    assert "nothing was run" in inc.reason and ("restart_service", "apply") not in executor.calls


@pytest.mark.parametrize("runbook,message", [
    ("{name: g, match: {alertname: X}, act_when: 'true', action: {entry: restart_service}}", "go together"),
    ("{name: g, match: {alertname: X}, evidence: {s: {entry: restart_service}}, act_when: 'true',"
     " action: {entry: restart_service}}", "not a read-only diagnostic"),
    ("{name: g, match: {alertname: X}, evidence: {s: {entry: service_status}}, act_when: 's.active_state ==',"
     " action: {entry: restart_service}}", "bad CEL in act_when"),
    ("{name: g, match: {alertname: X}, evidence: {my-name: {entry: service_status}}, act_when: 'true',"
     " action: {entry: restart_service}}", "must be an identifier"),
    ("{name: g, match: {alertname: X}, findings: [{when: 'true', says: s}], action: {entry: restart_service}}",
     "`findings` read the runbook's `evidence`"),
    ("{name: g, match: {alertname: X}, evidence: {s: {entry: service_status}}, act_when: 'true',"
     " findings: [{when: 's.result ==', says: s}], action: {entry: restart_service}}", "bad CEL"),
])
def test_a_wrong_gate_does_not_load(tmp_path, runbook, message):
    (tmp_path / "r.yml").write_text(f"runbooks:\n  - {runbook}\n")
    with pytest.raises(ConfigError, match=message):
        load_runbooks(tmp_path, load_catalog(PROJECT_ROOT / "playbooks"))


def test_the_shipped_runbooks_load(tmp_path):
    shutil.copytree(PROJECT_ROOT / "runbooks", tmp_path / "runbooks")
    books = load_runbooks(tmp_path / "runbooks", load_catalog(PROJECT_ROOT / "playbooks"))
    assert any(b.evidence for b in books)


CRASHED = {**DOWN, "result": "exit-code", "exit_status": 1, "ran_s": 0.3, "oom": False, "oom_line": "",
           "error_line": "2026-12-04T18:00:00+00:00 app-server-01 python3[812]: ValueError: WEBAPP_POOL_SIZE='abc'",
           "last_change": "/etc/default/webapp", "last_change_ago_s": 42.0}
# Restart=always, read between two crashes: it runs (this run has logged nothing yet), systemd restarted it 4 times
LOOPING = {**UP, "restarts": "4", "result": "success", "ran_s": -1.0, "oom": False, "oom_line": "", "error_line": "",
           "last_error_line": "2026-12-07T11:52:30+00:00 app-server-01 python3[3611]: ValueError: invalid literal for "
           "int() with base 10: '-x'", "last_change": "/etc/default/webapp", "last_change_ago_s": 9.0}
OOM = {**DOWN, "result": "signal", "exit_status": 9, "ran_s": 3600.5, "oom": True, "error_line": "",
       "oom_line": "2026-12-04T18:00:00+00:00 app-server-01 kernel: Out of memory: Killed process 812 (python3)",
       "last_change": "/opt/webapp/current", "last_change_ago_s": 86400.0}


@pytest.mark.parametrize("reports,payload,says,calls", [
    # a crash loop: not restarted again; the reason names the error, how it ended and the last change
    ([CRASHED], "webapp-down-app-server-01.json",
     ["fails right after it starts (a crash loop)", "ValueError: WEBAPP_POOL_SIZE='abc'",
      "exit-code after 0.3 s, exit status 1", "last change: /etc/default/webapp (42 s ago)"],
     [("service_status", "diagnose")]),
    # the same loop under Restart=always, read while systemd has it running again: the error is the run's before
    ([LOOPING], "webapp-down-app-server-01.json",
     ["as a crash loop does", "invalid literal for int() with base 10", "restarts by systemd: 4",
      "last change: /etc/default/webapp (9 s ago)"],
     [("service_status", "diagnose")]),
    # a unit on no allow-list: said as such, not as evidence that could not be read; nothing read
    ([DOWN], "unlisted-unit-down-app-server-01.json",
     ["unit 'cron' is not on app-server-01's remediator_services",
      "remediator may neither read nor act on it there, so nothing was done"], []),
], ids=["crash-loop", "crash-loop-read-while-it-runs", "unlisted-unit"])
def test_an_escalation_says_what_was_read_and_what_it_means(tmp_path, reports, payload, says, calls):
    engine, executor, incident_id = _run(tmp_path, reports, payload)
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.ESCALATED
    assert [phrase for phrase in says if phrase not in inc.reason] == [], inc.reason
    assert "could not be read" not in inc.reason
    assert executor.calls == calls


def test_a_unit_that_ran_an_hour_and_then_failed_is_restarted(tmp_path):
    ran = {**CRASHED, "ran_s": 3600.0}
    engine, _, incident_id = _run(tmp_path, [ran, UP], "webapp-down-app-server-01.json")
    assert _incident(engine, incident_id).state == IncidentState.RESOLVED


def test_an_oom_killed_unit_is_restarted_and_the_proposal_says_the_kernel_killed_it(tmp_path):
    engine, executor, incident_id = _run(tmp_path, [OOM, UP], "webapp-down-app-server-01.json")
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.RESOLVED, inc.reason
    assert "the kernel's out-of-memory killer ended it" in inc.proposal.rationale
    assert "Out of memory: Killed process 812 (python3)" in inc.proposal.rationale
    assert ("restart_service", "apply") in executor.calls


def test_a_fix_that_verified_twice_within_the_hour_and_the_fault_came_back_waits_for_a_person(tmp_path):
    """Flapping: the store's history knows which earlier runs verified; the third restart is held, with the times."""
    executor = ScriptedExecutor({"service_status": [DOWN, UP] * 3}, {"restart_service": CHECK})
    engine = new_engine(Settings(data_dir=tmp_path, verify_interval_s=0), executor=executor)
    payload = json.loads((FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_text())
    states = []
    for minute in (2, 14, 26):   # the same alert firing again after each fix, as Alertmanager sends it
        payload["alerts"][0]["startsAt"] = f"2026-11-24T03:{minute:02d}:11Z"
        (incident_id,) = take_in(engine, json.dumps(payload).encode()).incidents
        work_all(engine)
        states.append(_incident(engine, incident_id))
    assert [i.state for i in states] == [IncidentState.RESOLVED, IncidentState.RESOLVED, IncidentState.AWAITING_APPROVAL]
    held = states[2]
    assert "fix-keeps-coming-back" in held.decision.rules
    assert any(r.startswith("flapping: this fix verified twice within the hour") for r in held.decision.reasons)
    history = next(r for r in held.decision.reasons if r.startswith("done on app-server-01 within the hour before"))
    assert history.count("; verified)") == 2 and states[0].id in history and states[1].id in history


def test_a_unit_whose_process_is_stopped_is_hung_and_restarted_and_the_rationale_says_so(tmp_path):
    hung = {**UP, "process_state": "T", "main_pid": "812"}
    engine, executor, incident_id = _run(tmp_path, [hung, {**UP, "process_state": "S"}], "webapp-down-app-server-01.json")
    inc = _incident(engine, incident_id)
    assert inc.state == IncidentState.RESOLVED, inc.reason
    assert "the unit's process is stopped (state T" in inc.proposal.rationale and "main process: 812" in inc.proposal.rationale
    assert ("restart_service", "apply") in executor.calls


def test_the_control_a_running_process_in_an_active_unit_is_not_restarted(tmp_path):
    engine, executor, incident_id = _run(tmp_path, [{**UP, "process_state": "S"}], "webapp-down-app-server-01.json")
    assert _incident(engine, incident_id).state == IncidentState.ESCALATED
    assert executor.calls == [("service_status", "diagnose")]
