"""Finding 15: one model answer with 200 tool calls ran 200 diagnostics despite a 1 s budget. Only a few calls
of an answer are acted on, and diagnostics per incident are capped; every call still gets its answer."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide.evidence import Evidence
from remediator.engine.decide.llm import LLMPlanner
from remediator.engine.decide.planners import PlanningContext, PlanningSession, RunbookPlanner, load_runbooks
from remediator.engine.model.records import ActionProposal
from remediator.engine.run.recorded import RecordedExecutor
from remediator.engine.settings import Settings
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.security, pytest.mark.unit]
REPORT = json.loads((PROJECT_ROOT / "evals/cases/service-down/diagnostics/service_status.json").read_text())


def test_two_hundred_tool_calls_in_one_answer_run_four(catalog):
    def flood(k: int) -> list[dict]:   # 200 distinct diagnostics (the same question twice is asked once anyway)
        return [{"name": "service_status", "arguments": {"unit": "api-gateway", "lines": 200 * k + n}} for n in range(1, 201)]
    decide = [{"name": "restart_service", "arguments": {"unit": "api-gateway", "reason": "down", "rationale": "r"}}]
    ctx = PlanningContext(alertname="ServiceDown", labels={"service": "api-gateway"}, annotations={},
                          host="api-server-01", ref="flood")
    with ScriptedLLM([{"match": "Reference: flood.", "replies": [{"tool_calls": flood(0)}, {"tool_calls": flood(1)},
                                                                  {"tool_calls": flood(2)}, {"tool_calls": decide}]}]) as model:
        settings = Settings(llm_alerts=["*"], llm_base_url=model.url, llm_max_retries=0, llm_max_calls_per_answer=4, llm_max_diagnostics=6,
                            llm_max_tokens=1_000_000)   # the flood is big; tokens are not what this test bounds
        executor = RecordedExecutor({"service_status": REPORT})
        session = PlanningSession(diagnose=Evidence(executor, catalog, ctx.host, "t", 30).diagnose)
        runbooks = RunbookPlanner(load_runbooks(PROJECT_ROOT / "runbooks", catalog), catalog)
        answer = LLMPlanner(settings, catalog, fallback=runbooks).plan(ctx, session)
        answers = [m for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert isinstance(answer, ActionProposal) and answer.planner == "llm"
    # the model's: 4 of the first answer, 2 more, then the cap; and the runbook's own evidence gate, read once for the
    # second opinion (remediator/engine/decide/llm.py: the runbook for ServiceDown restarts only a unit it sees down)
    assert len(executor.asked) == 7
    assert executor.asked[-1] == ("service_status", catalog.get("service_status").validate_params({"unit": "api-gateway"}))
    assert len(answers) == 600                            # every call answered (the protocol wants one per id)
    assert sum("ignored: at most 4 tool calls" in m["content"] for m in answers) == 588
    assert sum("at most 6 diagnostics per incident" in m["content"] for m in answers) == 6
