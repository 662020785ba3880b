"""A scenario's incident recorded as an eval case (remediator/engine/lab/recording.py), and the recorded cases the
eval holds: one per lab scenario, each replayed to the answer the lab judged right."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.decide.configured import make_planner
from remediator.engine.decide.policy import load_policy
from remediator.engine.evals.cases import load_cases, run_case
from remediator.engine.lab.recording import PREFIX, record_case
from remediator.engine.lab.scenarios import load_scenarios
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.fakes import FixedClock, take_in, work_all

pytestmark = pytest.mark.unit
CASES = {c.name: c for c in load_cases(PROJECT_ROOT / "evals" / "cases")}


def test_an_incident_recorded_replays_to_the_same_answer(make_engine, catalog, tmp_path):
    """serve works an error-rate alert from recorded diagnostics and metrics; the incident, recorded, is a case whose
    evidence.json holds what it read (each metric Prometheus answered, too) and which the eval replays to the same
    report, without the case's own recordings."""
    source = CASES["high-error-rate-upstream"]
    engine = make_engine(executor=source.executor(checks=True), clock=FixedClock(source.at), query=source.query)
    (incident_id,) = take_in(engine, (PROJECT_ROOT / "evals" / "cases" / source.name / "alert.json").read_bytes()).incidents
    work_all(engine)
    with engine.store.read() as session:
        inc = session.get(Incident, incident_id)
        assert inc.state == IncidentState.ESCALATED and inc.report is not None
        cause = inc.report.cause
    (scenario,) = load_scenarios(catalog, only="upstream-refuses")
    folder = record_case(engine.store, scenario, incident_id, tmp_path / "cases")
    assert folder.name == PREFIX + "upstream-refuses"
    stored = json.loads((folder / "evidence.json").read_text())
    assert {"journal_errors", "metric:failing_by_route", "metric:release_broken"} <= set(stored)
    assert stored["metric:failing_by_route"]["report"]["series"] == source.metrics["failing_by_route"]

    (case,) = load_cases(tmp_path / "cases")
    assert case.alert.labels == source.alert.labels and case.diagnostics == {}
    assert case.expected.entry == "escalate" and case.expected.cause == cause
    settings = Settings(data_dir=tmp_path)
    inventory = load_inventory(settings.inventory)
    result = run_case(case, make_planner(settings, catalog), load_policy(settings.policies_dir, catalog, inventory),
                      catalog, inventory, settings)
    assert result.right and result.cause == cause, result
    assert "journal_errors" in result.evidence


def test_every_lab_scenario_is_a_recorded_eval_case(catalog):
    """`remediator eval` covers every scenario, with the evidence the lab recorded and the scenario's right answer."""
    for sc in load_scenarios(catalog):
        case = CASES.get(PREFIX + sc.id)
        assert case is not None, f"no eval case {PREFIX}{sc.id}: run `remediator scenarios run --record evals/cases`"
        assert case.expected.entry == (sc.entry or "escalate"), sc.id
        assert case.alert.labels["alertname"] == sc.alert and (case.past.at is not None), sc.id
    assert {n for n in CASES if n.startswith(PREFIX)} == {PREFIX + s.id for s in load_scenarios(catalog)}
