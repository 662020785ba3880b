"""Part of finding 17: policy was not decided again before the real run, so what was allowed (or approved) a while
ago ran even when the breaker, the rate limits or a time rule would now say otherwise. The pipeline now asks
policy once more right before the real run: a deny closes the incident, a person now needed is asked for, on the
dry run already shown; in both cases nothing runs."""
import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.states import ApprovalState, IncidentState
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identity, Role
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Approval, Incident
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor, take_in, work_all

pytestmark = [pytest.mark.security, pytest.mark.unit]
DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [], "started": True}
UP = {**DOWN, "active_state": "active", "sub_state": "running"}
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
ALICE = Identity(name="alice", role=Role.APPROVER, approver_id="a1")
# An operator's rules on top of the defaults: night runs need a person, and a change freeze from 23:00.
TIME_RULES = """rules:
  - {name: night-needs-a-person, when: 'time.hour_utc >= 22', verdict: approve, reason: at night a person decides}
  - {name: change-freeze, when: 'time.hour_utc >= 23', verdict: deny, reason: change freeze from 23:00 UTC}
"""


class Clock:
    """The time, moved by the test between what the pipeline asks."""

    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _engine(tmp_path, clock) -> tuple[Engine, ScriptedExecutor]:
    policies = tmp_path / "policies"
    shutil.copytree(PROJECT_ROOT / "policies", policies)
    (policies / "time.yml").write_text(TIME_RULES)
    executor = ScriptedExecutor({"service_status": [DOWN, UP]}, {"restart_service": CHECK})
    engine = new_engine(Settings(data_dir=tmp_path, policies_dir=policies, verify_interval_s=0), executor=executor,
                    clock=clock)
    return engine, executor


def _state(engine, incident_id) -> Incident:
    with engine.store.read() as s:
        return s.get(Incident, incident_id)


class Ticking(Clock):
    """Each question a second later: decided at 21:59:59, asked again right before the run at 22:00:00."""

    def __call__(self) -> datetime:
        now, self.at = self.at, self.at + timedelta(seconds=1)
        return now


def test_allowed_a_moment_ago_but_a_person_is_needed_now(tmp_path):
    engine, executor = _engine(tmp_path, Ticking(datetime(2026, 12, 1, 21, 59, 59, tzinfo=UTC)))
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    inc = _state(engine, incident_id)
    assert inc.state == IncidentState.AWAITING_APPROVAL and "at night a person decides" in inc.reason, inc.reason
    assert ("restart_service", "apply") not in executor.calls
    with engine.store.read() as s:
        pending = s.execute(select(Approval).where(Approval.incident_id == incident_id)).scalar_one()
    assert pending.preview_digest == inc.preview.digest     # the dry run already shown


def test_approved_before_the_freeze_does_not_run_in_it(tmp_path):
    clock = Clock(datetime(2026, 12, 1, 22, 30, tzinfo=UTC))
    engine, executor = _engine(tmp_path, clock)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    assert _state(engine, incident_id).state == IncidentState.AWAITING_APPROVAL
    with engine.store.read() as s:
        pending = s.execute(select(Approval).where(Approval.incident_id == incident_id)).scalar_one()
    assert approvals.vote(engine.store, engine.lifecycle, pending.id, ALICE, approve=True) == ApprovalState.APPROVED
    clock.at = datetime(2026, 12, 1, 23, 5, tzinfo=UTC)        # the person was slow; the freeze began
    work_all(engine)
    inc = _state(engine, incident_id)
    assert inc.state == IncidentState.DENIED and "right before the real run" in inc.reason
    assert "change freeze" in inc.reason and ("restart_service", "apply") not in executor.calls


def test_the_control_approved_in_time_it_runs(tmp_path):
    clock = Clock(datetime(2026, 12, 1, 22, 30, tzinfo=UTC))
    engine, executor = _engine(tmp_path, clock)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    with engine.store.read() as s:
        pending = s.execute(select(Approval).where(Approval.incident_id == incident_id)).scalar_one()
    approvals.vote(engine.store, engine.lifecycle, pending.id, ALICE, approve=True)
    work_all(engine)
    assert _state(engine, incident_id).state == IncidentState.RESOLVED
    assert ("restart_service", "apply") in executor.calls
