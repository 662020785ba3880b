"""Alert -> target -> runbook planner -> policy, for every case folder under tests/cases/."""
import json

import pytest
import yaml

from engine import PROJECT_ROOT
from engine.alerts import AlertmanagerPayload
from engine.models import Escalation
from engine.planners import PlanningContext, RunbookPlanner, load_runbooks
from engine.policy import PolicyContext, load_policy
from engine.targets import host_from_labels, load_inventory

pytestmark = pytest.mark.unit
CASES = sorted((PROJECT_ROOT / "tests" / "cases").iterdir())


@pytest.fixture(scope="module")
def world(catalog):
    inventory = load_inventory(PROJECT_ROOT / "inventory" / "lab.yml")
    return (inventory, RunbookPlanner(load_runbooks(PROJECT_ROOT / "runbooks", catalog), catalog),
            load_policy(PROJECT_ROOT / "policies", catalog, inventory))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, world):
    inventory, planner, policy = world
    expected = yaml.safe_load((case / "expected.yml").read_text())
    alert = AlertmanagerPayload.model_validate(json.loads((case / "alert.json").read_text())).alerts[0]

    host, why = host_from_labels(alert.labels, inventory, ["instance", "host", "nodename"])
    if host is None:
        assert expected["escalate"] in why
        return
    assert host == expected["host"]

    plan = planner.plan(PlanningContext(alertname=alert.alertname, labels=alert.labels,
                                        annotations=alert.annotations, host=host))
    if "escalate" in expected:
        assert isinstance(plan, Escalation) and expected["escalate"] in plan.reason
        return
    assert plan.entry == expected["entry"]
    decision, params = policy.decide(plan, PolicyContext(incident_host=host, severity=alert.severity))
    assert decision.verdict == expected["verdict"], decision.reasons
    assert params == expected["params"]
