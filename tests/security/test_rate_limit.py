"""Finding 4: the "4th restart within an hour" limit counted only runs with identical parameters, free-text `reason`
included, and `webapp` apart from `webapp.service`. It counts what the runs act on: the unit, as systemd names it.
Second review, N1: each instance of a template was a budget of its own (`worker@9999` after `worker@1..3`); every
instance now counts as its template."""
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide.configured import make_planner
from remediator.engine.decide.decision import PastRun, RecordedHistory, Situation, decide
from remediator.engine.decide.policy import load_policy
from remediator.engine.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.unit]
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
SITUATION = Situation(alertname="ServiceDown", labels={"alertname": "ServiceDown", "service": "api-gateway"},
                      annotations={}, severity="critical", host="api-server-01", ref="rate")


def _verdict(past: list[dict], service: str = "api-gateway") -> str:
    catalog = load_catalog(PROJECT_ROOT / "playbooks")
    inventory = load_inventory(PROJECT_ROOT / "inventory" / "lab.yml")
    history = RecordedHistory(runs=[PastRun("restart_service", ["api-server-01"], p, NOW - timedelta(minutes=10 * (n + 1)))
                                    for n, p in enumerate(past)])
    situation = dataclasses.replace(SITUATION, labels={**SITUATION.labels, "service": service})
    decided = decide(situation, catalog=catalog, planner=make_planner(Settings(), catalog),
                     policy=load_policy(PROJECT_ROOT / "policies", catalog, inventory), history=history, clock=lambda: NOW)
    assert decided.verdict is not None
    return decided.verdict.verdict.value


def test_three_restarts_of_one_unit_count_however_they_were_spelled_or_explained():
    assert _verdict([{"unit": "api-gateway.service", "reason": "first"},
                     {"unit": "api-gateway", "reason": "the second time"},
                     {"unit": "api-gateway", "reason": "ServiceDown on api-server-01"}]) == "approve"


def test_the_control_restarts_of_another_unit_do_not_count():
    assert _verdict([{"unit": "webapp", "reason": "x"}] * 3) == "allow"
    assert _verdict([{"unit": "api-gateway", "reason": "x"}] * 2) == "allow"


def test_every_instance_of_a_template_spends_one_budget():
    past = [{"unit": f"worker@{n}", "reason": "ServiceDown"} for n in (1, 2, 3)]
    assert _verdict(past, service="worker@9999") == "approve"
    assert _verdict(past[:2], service="worker@9999") == "allow"         # the control: two restarts are within it
