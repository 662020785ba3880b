"""Small engine parts: settings, diagnostics parameter binding and expectations, PromQL from
generatorURL, and the CLI's answers to wrong use (one line, exit 2, never a traceback)."""
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import DiagnosticCall
from remediator.engine.decide.evidence import bind_params, expectation_met
from remediator.engine.errors import ConfigError
from remediator.engine.outbound.prometheus import alert_expression
from remediator.engine.settings import load_settings

pytestmark = pytest.mark.unit
REMEDIATOR = Path(sys.executable).parent / "remediator"


def test_tokens_rotate_as_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("REMEDIATOR_TOKENS", "new-token-0123456789abcdef, old-token-0123456789abcdef,")
    assert [t.get_secret_value() for t in load_settings().tokens] == ["new-token-0123456789abcdef", "old-token-0123456789abcdef"]


def test_a_wrong_setting_names_the_key(monkeypatch):
    monkeypatch.setenv("REMEDIATOR_WORKERS", "many")
    with pytest.raises(ConfigError, match="workers"):
        load_settings()


def test_config_file_that_is_missing_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("REMEDIATOR_CONFIG", str(tmp_path / "nope.yml"))
    with pytest.raises(ConfigError, match="nope.yml: no such file"):
        load_settings()


def test_config_file_values_and_env_over_them(monkeypatch, tmp_path):
    config = tmp_path / "remediator.yml"
    config.write_text("workers: 3\nport: 9000\ntokens: [from-file-0123456789abcdefgh]\n")
    monkeypatch.setenv("REMEDIATOR_CONFIG", str(config))
    monkeypatch.setenv("REMEDIATOR_PORT", "9100")
    s = load_settings()
    assert (s.workers, s.port, s.tokens[0].get_secret_value()) == (3, 9100, "from-file-0123456789abcdefgh")


def test_diagnostic_parameters_come_from_the_remediation_by_reference():
    call = DiagnosticCall(entry="service_status", params={"unit": "{service}@1.service", "lines": 20})
    assert bind_params(call, {"service": "worker"}) == {"unit": "worker@1.service", "lines": 20}
    whole = DiagnosticCall(entry="disk_usage", params={"paths": "{paths}"})
    assert bind_params(whole, {"paths": ["/var/log/webapp"]}) == {"paths": ["/var/log/webapp"]}   # keeps its type
    with pytest.raises(KeyError):
        bind_params(call, {})


@pytest.mark.parametrize("expect,report,misses", [
    ({"active_state": "active"}, {"active_state": "active"}, 0),
    ({"active_state": "active"}, {"active_state": "failed"}, 1),
    ({"old_files": 0}, {"old_files": "0"}, 0),          # Ansible facts may come back as strings
    ({"old_files": 0}, {"old_files": "three"}, 1),
    ({"old_files": 0}, {}, 1),
    ({"enabled": True}, {"enabled": "True"}, 0),
])
def test_verify_expectations(expect, report, misses):
    assert len(expectation_met(expect, report)) == misses


@pytest.mark.parametrize("url,expr", [
    ("http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22webapp%22%7D+%3D%3D+0&g0.tab=1", 'up{job="webapp"} == 0'),
    ("http://prometheus.example:9090/graph?g0.expr=node_filesystem_avail_bytes", "node_filesystem_avail_bytes"),
    ("", None),
    ("http://prometheus:9090/graph?g0.tab=1", None),
    ("not a url", None),
])
def test_alert_expression_from_generator_url(url, expr):
    assert alert_expression(url) == expr


def _cli(*args, env=None):
    return subprocess.run([str(REMEDIATOR), *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


def test_serve_refuses_to_start_without_a_token(tmp_path):
    r = _cli("serve", env={"REMEDIATOR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "no API token configured" in r.stderr and "--allow-unauthenticated" in r.stderr
    assert "Traceback" not in r.stderr


def test_plan_says_what_is_wrong_with_its_input(tmp_path):
    r = _cli("plan", str(tmp_path / "missing.json"), env={"REMEDIATOR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "missing.json" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "4", "status": "firing"}')
    r = _cli("plan", str(bad), env={"REMEDIATOR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "alerts" in r.stderr and "Traceback" not in r.stderr


def test_plan_without_check_shows_the_verdict(tmp_path):
    sample = PROJECT_ROOT / "tests" / "fixtures" / "samples" / "alertmanager-firing-grouped.json"
    r = _cli("plan", str(sample), "--no-check", env={"REMEDIATOR_DATA_DIR": str(tmp_path), "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "restart_service" in r.stdout and "allow" in r.stdout
    assert r.stdout.count("escalate: no target host") == 2


def test_plan_without_check_escalates_an_unlisted_unit_as_serve_does(tmp_path):
    """Without reading the host, the gate's read is known to be refused by the allow-lists: the same escalation as
    serve's, not the deny that policy would give the restart (issue 33)."""
    alert = PROJECT_ROOT / "tests" / "fixtures" / "payloads" / "unlisted-unit-down-app-server-01.json"
    r = _cli("plan", str(alert), "--no-check", env={"REMEDIATOR_DATA_DIR": str(tmp_path), "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert "escalate: runbook service-down: unit" in r.stdout and "is not on app-server-01's remediator_services" in r.stdout
    assert "proposal:" not in r.stdout and "policy:" not in r.stdout


def test_incidents_show_unknown_is_a_clear_error(tmp_path):
    r = _cli("incidents", "show", "nope", env={"REMEDIATOR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "no incident 'nope'" in r.stderr


def test_a_domain_module_takes_a_frozen_section_of_the_settings():
    """The operator keeps one flat schema; decide/blast.py declares the keys it reads and gets only those, frozen."""
    import dataclasses

    from remediator.engine.decide import blast
    from remediator.engine.settings import Settings
    limits = Settings(cap_global=3, brake_regions=4).section(blast.Limits)
    assert (limits.cap_global, limits.brake_regions, limits.budget_per_group) == (3, 4, 5)
    assert {f.name for f in dataclasses.fields(limits)} < set(Settings.model_fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.cap_global = 99   # type: ignore[misc]
