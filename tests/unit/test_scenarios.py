"""The fault-scenario suite's data and its judge's arithmetic (remediator/engine/lab/scenarios.py); the scenarios
themselves run against the lab in tests/chaos/test_scenarios.py."""
import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.errors import ConfigError
from remediator.engine.lab.scenarios import (
    SCENARIOS,
    ScenarioResult,
    load_scenarios,
    made_worse,
    report_markdown,
    summarize,
)

pytestmark = pytest.mark.unit
CATALOG = load_catalog(PROJECT_ROOT / "playbooks")


def test_every_scenario_loads_names_a_lab_host_and_says_what_right_is():
    scenarios = load_scenarios(CATALOG)
    assert len(scenarios) == len(list(SCENARIOS.glob("*.yml"))) >= 9
    lab_hosts = {"app-server-01", "app-server-02", "api-server-01", "db-primary-01"}
    for sc in scenarios:
        assert sc.host in lab_hosts, sc.id
        assert sc.inject or sc.fire, f"{sc.id}: no fault"
        assert sc.unharmed, f"{sc.id}: nothing checks that it was not made worse"
        assert sc.outcome != "fixed" or sc.fixed, f"{sc.id}: a fix the host does not confirm"
        assert sc.outcome != "escalated" or sc.says, f"{sc.id}: an escalation must name the right cause"
        assert not sc.cleanup or sc.recovered or not sc.inject, f"{sc.id}: a cleanup nothing confirms"


@pytest.mark.parametrize("text,message", [
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: fixed\n", "names its entry"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: escalated\nentry: restart_service\n", "names no entry"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: held\nentry: delete_everything\n", "unknown entry"),
    ("id: y\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: escalated\n", "must be the file's name"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: maybe\n", "outcome"),
])
def test_a_scenario_that_cannot_be_judged_does_not_load(tmp_path, text, message):
    (tmp_path / "x.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scenarios(CATALOG, tmp_path)


def _result(id_, klass, right=True, worse=(), seconds=10.0, fixed=False):
    return ScenarioResult(id=id_, klass=klass, host="h", alert="A", expected="e", got="g", right=right,
                          worse=list(worse), problems=[] if right else ["p"], seconds=seconds, fixed=fixed)


def test_the_summary_counts_right_and_worse_and_takes_medians_per_class_and_of_the_fixes():
    results = [_result("a", "crash loop", seconds=8.0), _result("b", "crash loop", right=False, seconds=20.0),
               _result("c", "OOM kill", fixed=True, seconds=14.0), _result("d", "OOM kill", fixed=True, seconds=18.0),
               _result("e", "security", right=False, worse=["ran restart_service on app-server-02"], seconds=None)]
    s = summarize(results)
    assert (s.scenarios, s.right, s.right_pct, s.worse) == (5, 3, 60.0, 1)
    assert s.median_s == 16.0 and s.fixed_median_s == 16.0
    assert s.by_class["crash loop"].model_dump() == {"scenarios": 2, "right": 1, "median_s": 14.0}
    assert s.by_class["security"].median_s is None
    md = report_markdown(results, s)
    assert "| e | security |" in md and "MADE WORSE: ran restart_service on app-server-02" in md
    assert "handled right: 3/5 (60.0 %); made worse: 1" in md


def _incident(id_, state, *runs):
    return {"id": id_, "state": state, "reason": "r", "runs": [
        {"mode": mode, "entry": entry, "hosts": hosts, "status": status, "summary": "s"} for mode, entry, hosts, status in runs]}


def test_made_worse_sees_another_host_a_loop_and_a_failed_run_in_any_incident_of_the_scenario():
    check = ("check", "restart_service", ["app-server-01"], "successful")
    fix = ("apply", "restart_service", ["app-server-01"], "successful")
    assert made_worse("app-server-01", [_incident("i1", "resolved", check, fix)]) == []
    assert made_worse("app-server-01", [_incident("i1", "escalated", check)]) == []
    elsewhere = made_worse("app-server-01", [_incident("i1", "escalated"),
                                             _incident("i2", "resolved", ("apply", "restart_service", ["app-server-02"], "successful"))])
    assert elsewhere == ["incident i2 ran restart_service on app-server-02, not only app-server-01"]
    loop = made_worse("app-server-01", [_incident("i1", "resolved", fix), _incident("i3", "resolved", fix)])
    assert loop == ["2 real runs (restart_service, restart_service): a loop, not a fix"]
    failed = made_worse("app-server-01", [_incident("i1", "failed", ("apply", "restart_service", ["app-server-01"], "failed"))])
    assert failed == ["incident i1's real run of restart_service failed: s"]
    assert made_worse("app-server-01", [_incident("i1", "resolved", fix), _incident("i3", "resolved", fix)], allowed=2) == []
