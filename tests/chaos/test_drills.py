"""The catalog's drills through the real chain: `remediator lab up` (containers + Prometheus +
Alertmanager), then `remediator chaos run`, which starts `remediator serve` and judges each drill
by probing the hosts. Slack stand-in on loopback hears every fix."""
import json
import subprocess
import time

import httpx
import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.lab.drills import drills_of
from tests.chaos.conftest import REMEDIATOR

pytestmark = pytest.mark.e2e


def test_lab_up_runs_prometheus_that_scrapes_every_lab_host(lab_chain):
    env, _, _ = lab_chain
    status = subprocess.run([str(REMEDIATOR), "lab", "status"], env=env, capture_output=True, text=True).stdout
    assert "prometheus: running" in status and "alertmanager: running" in status
    url = f"http://127.0.0.1:{env['REMEDIATOR_LAB_PROMETHEUS_PORT']}/api/v1/targets"
    up: dict[str, str] = {}
    for _ in range(30):   # discovery and the first scrapes take a moment after /-/ready
        up = {t["labels"]["host"]: t["health"] for t in httpx.get(url).json()["data"]["activeTargets"]
              if t["labels"]["job"] == "webapp"}
        if len(up) == 4 and set(up.values()) == {"up"}:
            break
        time.sleep(0.5)
    assert up == dict.fromkeys(["app-server-01", "app-server-02", "api-server-01", "db-primary-01"], "up")


def test_lab_prometheus_loads_remediators_own_rules(lab_chain):
    env, _, _ = lab_chain
    url = f"http://127.0.0.1:{env['REMEDIATOR_LAB_PROMETHEUS_PORT']}/api/v1/rules"
    health: dict[str, str] = {}
    for _ in range(30):   # a rule's health is "unknown" until its first evaluation
        groups = {g["name"]: g for g in httpx.get(url).json()["data"]["groups"]}
        health = {r["name"]: r["health"] for r in groups.get("remediator", {}).get("rules", [])}
        if health and set(health.values()) == {"ok"}:
            break
        time.sleep(0.5)
    assert len(health) == 10 and set(health.values()) == {"ok"}, health
    assert {"RemediatorNoWorker", "RemediatorAuditChainBroken", "RemediatorApprovalExpiringSoon"} <= set(health)


@pytest.mark.timeout(1500)   # every drill through the real chain: about 5 minutes alone, longer beside the other lanes
def test_every_drill_passes(lab_chain):
    env, data, receivers = lab_chain
    run = subprocess.run([str(REMEDIATOR), "chaos", "run"], env={**env, "COLUMNS": "200"}, capture_output=True,
                         text=True, timeout=1500)
    report = json.loads((data / "chaos" / "report.json").read_text())
    assert run.returncode == 0, run.stdout + run.stderr + (data / "chaos-serve.log").read_text()[-3000:]
    drills = drills_of(load_catalog(PROJECT_ROOT / "playbooks"))
    assert [r["drill"] for r in report] == [name for name, _, _ in drills]
    for r in report:
        assert r["ok"], r
    assert (data / "chaos" / "report.md").read_text().count("| pass |") == len(report)
    fixed = [r for r in report if r["seconds_to_fix"] is not None]
    # the others must only escalate, or wait for a person with a diagnosis (Level 2)
    assert [r["drill"] for r in fixed] == [name for name, _, d in drills if d.state == "resolved"]
    slack_fixed = [b for b in receivers.received["slack"] if b["text"].startswith("Fixed")]
    assert len(slack_fixed) >= len(fixed)
    verify = subprocess.run([str(REMEDIATOR), "audit", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
    (corruption,) = [r for r in report if r["drill"] == "db-corruption"]
    page = receivers.wait_for("pagerduty", lambda b: b["dedup_key"] == corruption["incident"], timeout_s=30)
    assert page["event_action"] == "trigger"
