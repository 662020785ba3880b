"""The blast-radius boundary (remediator/engine/decide/blast.py), as the attack: a model answer that names more
hosts, a planner whose target spans two regions, and labels that claim another region or group. Regions come from
the inventory alone, an action acts on the alerting host alone, and a target across regions runs nothing; the
control cases show the same path runs, so each test can fail."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide.llm import LLMPlanner
from remediator.engine.decide.planners import PlanningContext, PlanningSession, RunbookPlanner, load_runbooks
from remediator.engine.model.records import ActionProposal
from remediator.engine.model.states import IncidentState
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store import leases
from remediator.engine.store.tables import AuditEvent, Incident, Run, utcnow
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor, take_in, work_all
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.security, pytest.mark.unit]
DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [], "started": True}
UP = {**DOWN, "active_state": "active", "sub_state": "running"}
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
ALERT = json.loads((FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_text())
EAST, WEST = "app-server-01", "app-server-02"      # inventory/lab.yml: region_east and region_west, both of group app


def _engine(tmp_path) -> tuple[Engine, ScriptedExecutor]:
    executor = ScriptedExecutor({"service_status": [DOWN, UP]}, {"restart_service": CHECK})
    # the storm brake off: one alert in both regions is what these tests send (tests/unit/test_blast.py brakes)
    return new_engine(Settings(data_dir=tmp_path, verify_interval_s=0, brake_hosts=50, brake_regions=99),
                  executor=executor), executor


def _alert(host: str, fingerprint: str, **labels: str) -> bytes:
    body = json.loads(json.dumps(ALERT))
    alert = body["alerts"][0]
    alert["labels"] = {**alert["labels"], "host": host, "instance": f"{host}:18081", **labels}
    alert["fingerprint"] = fingerprint
    return json.dumps(body).encode()


def _applies(executor: ScriptedExecutor) -> int:
    return executor.calls.count(("restart_service", "apply"))


class Widening:
    """A planner gone wrong (or a model it trusted): the alert host's proposal, with one more host added."""

    def __init__(self, planner, extra: str):
        self.planner, self.extra = planner, extra

    def plan(self, ctx, session):
        plan = self.planner.plan(ctx, session)
        if isinstance(plan, ActionProposal):
            return plan.model_copy(update={"hosts": [*plan.hosts, self.extra]})
        return plan

    def gate_again(self, *args):
        return self.planner.gate_again(*args)


def test_a_model_answer_that_names_more_hosts_is_refused_and_acts_on_the_alerting_host(catalog):
    ctx = PlanningContext(alertname="ServiceDown", labels={"service": "webapp"}, annotations={}, host=EAST, ref="wide")
    wide = {"unit": "webapp", "reason": "down", "rationale": "r", "hosts": [EAST, WEST], "limit": "all"}
    replies = [{"tool_calls": [{"name": "restart_service", "arguments": wide}]},
               {"tool_calls": [{"name": "restart_service", "arguments": {"unit": "webapp", "reason": "down", "rationale": "r"}}]}]
    with ScriptedLLM([{"match": "Reference: wide.", "replies": replies}]) as model:
        settings = Settings(llm_alerts=["*"], llm_base_url=model.url, llm_max_retries=0)
        runbooks = RunbookPlanner(load_runbooks(PROJECT_ROOT / "runbooks", catalog), catalog)
        answer = LLMPlanner(settings, catalog, fallback=runbooks).plan(ctx, PlanningSession())
        refused = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"][0]
    assert "hosts" in refused and "limit" in refused, refused           # told what it may not name
    assert isinstance(answer, ActionProposal) and answer.hosts == [EAST] and set(answer.params) == {"unit", "reason"}


def test_a_target_across_two_regions_runs_nothing(tmp_path):
    engine, executor = _engine(tmp_path)
    engine.pipeline.steps.planner = Widening(engine.pipeline.steps.planner, WEST)
    (incident_id,) = take_in(engine, _alert(EAST, "0000000000000001")).incidents
    work_all(engine)
    with engine.store.read() as s:
        inc = s.get(Incident, incident_id)
        runs = s.execute(select(Run.mode)).scalars().all()
    assert inc.state == IncidentState.DENIED, (inc.state, inc.reason)
    assert "apply" not in runs and "check" not in runs and _applies(executor) == 0
    # the control: the same alert, the planner as shipped, runs and verifies
    engine, executor = _engine(tmp_path / "control")
    (control,) = take_in(engine, _alert(EAST, "0000000000000001")).incidents
    work_all(engine)
    with engine.store.read() as s:
        assert s.get(Incident, control).state == IncidentState.RESOLVED
    assert _applies(executor) == 1


def _in_flight(engine: Engine, host: str) -> None:
    """restart_service running for real on `host` (another worker's)."""
    with engine.store.write() as s:
        s.add(Incident(id=f"flight-{host}", correlation_key=f"flight|{host}", alertname="Other", host=host,
                       severity="critical", priority=0, labels={}, annotations={}, state=IncidentState.EXECUTING,
                       entry="restart_service"))
        s.flush()
        s.add(Run(incident_id=f"flight-{host}", ident=f"flight-{host}-apply", entry="restart_service", mode="apply",
                  hosts=[host], params={}, status="running", started_at=utcnow() - timedelta(seconds=5)))


@pytest.mark.parametrize("labels", [
    {"region": "region_east"}, {"region_east": "true", "group": "region_east"}, {"site": "east", "zone": "region_east"}])
def test_labels_that_claim_the_other_region_do_not_let_a_wave_through(tmp_path, labels):
    engine, executor = _engine(tmp_path)
    _in_flight(engine, "db-primary-01")          # region_east: a west host waits until it verified and baked
    (incident_id,) = take_in(engine, _alert(WEST, "00000000000000aa", **labels)).incidents
    work_all(engine)
    with engine.store.read() as s:
        inc = s.get(Incident, incident_id)
        held = s.execute(select(AuditEvent.data).where(AuditEvent.kind == "incident.held")).scalars().all()
    assert inc.state == IncidentState.RECEIVED and inc.not_before is not None and _applies(executor) == 0
    assert any("running in region_east and has not verified yet; region_west waits" in d["why"] for d in held), held


def test_labels_do_not_lift_a_pause_on_the_hosts_region(tmp_path):
    engine, executor = _engine(tmp_path)
    leases.pause(engine.store, "region_west", "oncall", "a change window")
    (paused,) = take_in(engine, _alert(WEST, "00000000000000bb", region="region_east", group="db")).incidents
    work_all(engine)
    with engine.store.read() as s:
        assert s.get(Incident, paused).state == IncidentState.RECEIVED
    assert executor.calls == []
    # the control: the other region is not paused, its alert is worked
    (control,) = take_in(engine, _alert(EAST, "00000000000000cc")).incidents
    work_all(engine)
    with engine.store.read() as s:
        assert s.get(Incident, control).state == IncidentState.RESOLVED
