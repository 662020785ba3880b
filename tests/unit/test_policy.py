import json
import re

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide.policy import PolicyContext, load_policy
from remediator.engine.errors import ConfigError
from remediator.engine.model.records import ActionProposal, Verdict
from remediator.engine.run.preview import build_preview
from tests.conftest import FIXTURES

pytestmark = pytest.mark.unit
HOST = "app-server-01"


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(PROJECT_ROOT / "inventory" / "lab.yml")


@pytest.fixture(scope="module")
def policy(catalog, inventory):
    return load_policy(PROJECT_ROOT / "policies", catalog, inventory)


def proposal(entry="restart_service", params=None, hosts=(HOST,), offered=None):
    params = {"unit": "webapp", "reason": "r"} if params is None else params
    return ActionProposal(entry=entry, params=params, hosts=list(hosts), rationale="test", planner="test",
                          offered=[entry] if offered is None else offered)


def decide(policy, p, **ctx):
    return policy.decide(p, PolicyContext(incident_host=HOST, **ctx))[0]


def test_safe_restart_is_allowed(policy):
    d = decide(policy, proposal())
    assert d.verdict == Verdict.ALLOW and d.rules == ["safe-entries-run-automatically"]


def test_fourth_restart_within_the_hour_needs_approval(policy):
    assert decide(policy, proposal(), same_action_last_hour=2).verdict == Verdict.ALLOW
    d = decide(policy, proposal(), same_action_last_hour=3)
    assert d.verdict == Verdict.APPROVE and d.rules == ["restart-rate-limit"]


def test_a_storm_of_runs_of_one_entry_needs_a_person(policy):
    assert decide(policy, proposal(), entry_runs_last_hour=19).verdict == Verdict.ALLOW
    d = decide(policy, proposal(), entry_runs_last_hour=20)
    assert d.verdict == Verdict.APPROVE and d.rules == ["entry-storm-brake"]


@pytest.mark.parametrize("p,reason", [
    (proposal(entry="delete_database", params={}), "unknown catalog entry 'delete_database'"),
    (proposal(entry="disk_usage", params={}), "is a diagnostic, not a remediation"),
    (proposal(offered=["clean_logs"]), "was not offered to the test planner"),
    (proposal(params={"unit": "webapp", "reason": "r", "command": "rm -rf /"}), "command: Extra inputs are not permitted"),
    (proposal(hosts=["db-primary-01"]), "outside the alert's scope"),
    (proposal(hosts=["evil.example.com"]), "hosts not in the inventory: evil.example.com"),
    (proposal(params={"unit": "webapp; rm -rf /", "reason": "r"}), "is not on app-server-01's remediator_services"),
    (proposal("clean_logs", {"paths": ["/etc"]}), "paths '/etc' is not on app-server-01's remediator_clean_paths"),
    (proposal("clean_logs", {"paths": ["/var/log/webapp/../../etc"]}), "is not on app-server-01's remediator_clean_paths"),
    (proposal("clean_logs", {"paths": ["/var/log/webapp"], "patterns": ["*"]}),
     "patterns '*' is not on app-server-01's remediator_clean_patterns"),
    (proposal("clean_logs", {"paths": ["/var/log/webapp"], "min_age_days": 0}), "newer than one day"),
])
def test_denied_with_a_reason(policy, p, reason):
    d = decide(policy, p)
    assert d.verdict == Verdict.DENY
    assert any(reason in r for r in d.reasons), d.reasons


def test_no_matching_rule_is_denied(catalog, inventory, tmp_path):
    (tmp_path / "only.yml").write_text("rules:\n  - {name: r, entries: [scale_out], when: 'true', verdict: allow, reason: ok}\n")
    d = decide(load_policy(tmp_path, catalog, inventory), proposal())
    assert d.verdict == Verdict.DENY and d.rules == ["default-deny"]

#: clean_logs has no inventory scope yet: a policy must name it in a deny rule to load (this one never fires)
@pytest.mark.security   # the security tier too: a safe entry nobody bounded would otherwise run on any unit
def test_a_policy_that_leaves_an_entry_unbounded_does_not_load(catalog_copy, inventory, tmp_path):
    """Default deny must not be default allow for a safe entry nobody wrote a bound for (here: no scope)."""
    meta = catalog_copy / "roles" / "clean_logs" / "meta" / "remediator.yml"
    meta.write_text(re.sub(r"\nscope:\n(  - .*\n)+", "\n", meta.read_text()))
    (tmp_path / "open.yml").write_text("rules:\n  - {name: safe, when: 'entry.risk == \"safe\"', verdict: allow, reason: ok}\n")
    with pytest.raises(ConfigError, match="nothing bounds what clean_logs may act on"):
        load_policy(tmp_path, load_catalog(catalog_copy), inventory)


@pytest.mark.security   # finding 17: a CEL rule returning a string counted as a match
def test_a_rule_that_is_not_a_bool_denies(catalog, inventory, tmp_path):
    (tmp_path / "p.yml").write_text("rules:\n  - {name: str-rule, when: 'entry.id', verdict: allow, reason: ok}\n")
    d = decide(load_policy(tmp_path, catalog, inventory), proposal())
    assert d.verdict == Verdict.DENY and "not a bool" in d.reasons[0]


@pytest.mark.parametrize("text,message", [
    ("rules:\n  - {name: r, when: 'entry.risk ==', verdict: allow, reason: x}\n", "rule r: bad CEL condition"),
    ("rules:\n  - {name: r, when: 'true', verdict: maybe, reason: x}\n", "rules.0.verdict"),
    ("rules:\n  - {name: r, entries: [nuke], verdict: allow, reason: x}\n", "unknown entry 'nuke'"),
])
def test_bad_policy_fails_closed(catalog, inventory, tmp_path, text, message):
    (tmp_path / "bad.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(tmp_path, catalog, inventory)


def preview(name):
    return build_preview("clean_logs", json.loads((FIXTURES / "events" / f"{name}.json").read_text()), True, [HOST])


def test_review_passes_a_preview_within_bounds(policy):
    assert policy.review(proposal("clean_logs", {"paths": ["/var/log/webapp"]}), preview("clean_logs-check")) is None


def test_review_stops_paths_outside_the_allow_list(catalog, inventory, tmp_path):
    (tmp_path / "p.yml").write_text("preview_paths:\n  - {entry: clean_logs, allowed_paths: [/var/tmp/webapp]}\n"
                                    "rules:\n  - {name: r, verdict: allow, reason: ok}\n")
    d = load_policy(tmp_path, catalog, inventory).review(proposal("clean_logs", {"paths": ["/var/log/webapp"]}),
                                                          preview("clean_logs-check"))
    assert d is not None and d.verdict == Verdict.DENY and "/var/log/webapp/old-1.log" in d.reasons[0]


def test_review_stops_a_failed_dry_run(policy):
    failed = build_preview("restart_service", json.loads(
        (FIXTURES / "events" / "restart_service-unknown-unit-check.json").read_text()), True, [HOST])
    d = policy.review(proposal(), failed)
    assert d is not None and "the dry run failed" in d.reasons[0]
