"""Monitoring remediator itself: its alert rules are valid and fire on the series they should (promtool), and the
dashboard's queries are valid PromQL. tests/e2e/test_monitoring.py checks that serve exports what both use."""
import json
import re
import subprocess

import pytest
import yaml

from remediator.engine import PROJECT_ROOT

pytestmark = pytest.mark.unit
RULES = PROJECT_ROOT / "packaging" / "prometheus" / "remediator-rules.yml"
DASHBOARD = PROJECT_ROOT / "packaging" / "grafana" / "remediator.json"
RULES_TEST = PROJECT_ROOT / "tests" / "fixtures" / "prometheus" / "remediator-rules-test.yml"
DASHBOARD_TEST = PROJECT_ROOT / "tests" / "fixtures" / "prometheus" / "dashboard-replicas-test.yml"
#: what each replica reads from the one store and exports: the same value on every replica
FROM_THE_STORE = ("remediator_incidents", "remediator_approvals_waiting", "remediator_approval_next_expiry_seconds",
                  "remediator_outbox_pending", "remediator_outbox_dead", "remediator_breakers_open",
                  "remediator_audit_chain_broken")
# what the issue asks the rules to watch, by the alert that does
WATCHED = {"RemediatorIngesterStuck", "RemediatorIntakeBacklogGrowing", "RemediatorBreakerOpen",
           "RemediatorOutboxFailing", "RemediatorNoWorker", "RemediatorAuditChainBroken", "RemediatorApprovalExpiringSoon"}


def _promtool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *argv], capture_output=True, text=True, timeout=60)


def dashboard_queries() -> list[str]:
    """Every query of the dashboard, its Grafana variables given a value Prometheus can parse."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"].replace("$job", ".*") for p in panels for t in p["targets"]]


def rule_queries() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_the_rules_are_valid_and_cover_what_an_operator_must_hear():
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert WATCHED <= alerts
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:   # routed to people, never back into remediator's own webhook
            assert r["labels"]["component"] == "remediator" and r["labels"]["severity"] in {"warning", "critical"}


def test_the_rules_fire_on_the_series_that_should_raise_them():
    tested = _promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    covered = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert covered == {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}


def test_the_dashboards_queries_are_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 10
    as_rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": q}
                                                          for i, q in enumerate(queries)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(as_rules))
    checked = _promtool("check", "rules", str(tmp_path / "dashboard.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # and the check can fail
    (tmp_path / "broken.yml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (state (remediator_incidents)"}]}]}))
    assert _promtool("check", "rules", str(tmp_path / "broken.yml")).returncode != 0


def test_the_dashboard_shows_what_the_store_holds_once_whatever_the_replicas():
    """Two replicas export the same store: every panel on it takes one of their values, never their sum."""
    tests = yaml.safe_load(DASHBOARD_TEST.read_text())["tests"]
    tested = {t["expr"] for group in tests for t in group["promql_expr_test"]}
    store_queries = {q for q in dashboard_queries() if re.search(rf"\b({'|'.join(FROM_THE_STORE)})\b", q)}
    assert len(store_queries) >= 7 and store_queries <= tested, store_queries - tested
    ran = _promtool("test", "rules", str(DASHBOARD_TEST))
    assert ran.returncode == 0 and "SUCCESS" in ran.stdout, ran.stdout + ran.stderr
