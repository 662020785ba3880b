"""serve, `remediator plan` and `remediator eval` decide alike: every eval case, through all three, with the
same recorded diagnostics, run history and clock, gets the same entry, parameters and verdict."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide.configured import make_planner
from remediator.engine.evals.cases import EvalCase, load_cases, run_case
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.engines import new_engine, shipped
from tests.fakes import FixedClock, seed_history, take_in

pytestmark = pytest.mark.unit
CASES = load_cases(PROJECT_ROOT / "evals" / "cases")


def _payload(case: EvalCase) -> bytes:
    body = json.loads((PROJECT_ROOT / "evals" / "cases" / case.name.split("+")[0] / "alert.json").read_text())
    body["alerts"] = [case.alert.model_dump(mode="json")]
    return json.dumps(body).encode()


def _eval(case: EvalCase, settings: Settings) -> tuple:
    _, catalog, inventory, policy = shipped()      # what `remediator eval` loads from these settings, loaded once
    result = run_case(case, make_planner(settings, catalog), policy, catalog, inventory, settings)
    return result.got, result.params if result.got != "escalate" else {}, result.verdict


def _engine(case: EvalCase, settings: Settings) -> Engine:
    engine = new_engine(settings, executor=case.executor(checks=True), clock=FixedClock(case.at),
                    query=case.query)
    seed_history(engine.store, case.history)
    return engine


def _plan(case: EvalCase, settings: Settings) -> tuple:
    out = _engine(case, settings).what_if(case.alert, check=True)
    if out.proposal is None:
        return "escalate", {}, None
    return out.proposal.entry, out.proposal.params, out.decision.verdict.value


def _serve(case: EvalCase, settings: Settings) -> tuple:
    engine = _engine(case, settings)
    (incident_id,) = take_in(engine, _payload(case)).incidents
    claimed = engine.pipeline.claim()
    if claimed is not None:
        assert claimed == incident_id
        engine.pipeline.work(incident_id)
    with engine.store.read() as session:
        inc = session.get(Incident, incident_id)
        if inc.proposal is None:
            return "escalate", {}, None
        assert inc.decision is not None
        return inc.proposal.entry, inc.proposal.params, inc.decision.verdict.value


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_serve_plan_and_eval_agree(case, tmp_path):
    settings = Settings(data_dir=tmp_path)
    evaluated = _eval(case, settings)
    assert _plan(case, settings.model_copy(update={"data_dir": tmp_path / "plan"})) == evaluated
    assert _serve(case, settings.model_copy(update={"data_dir": tmp_path / "serve"})) == evaluated


def test_history_and_clock_change_the_verdict_in_all_three(tmp_path):
    """The cases that exist for this: without their history.yml, policy would allow."""
    by_name = {c.name: c for c in CASES}
    for name in ("service-down-fourth-restart", "service-down-breaker-open"):
        case = by_name[name]
        settings = Settings(data_dir=tmp_path / name)
        assert _eval(case, settings)[2] == "approve"
        bare = case.model_copy(update={"past": type(case.past)()})
        assert _eval(bare, settings)[2] == "allow"
        assert _serve(bare, settings.model_copy(update={"data_dir": tmp_path / name / "bare"}))[2] == "allow"
