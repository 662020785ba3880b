"""The catalog's drills through the real chain: `remediator lab up` (containers + Prometheus +
Alertmanager), then `remediator chaos run`, which starts `remediator serve` and judges each drill
by probing the hosts. Slack stand-in on loopback hears every fix."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

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
    assert len(health) == 11 and set(health.values()) == {"ok"}, health
    assert {"RemediatorNoWorker", "RemediatorAuditChainBroken", "RemediatorApprovalExpiringSoon"} <= set(health)


@pytest.mark.timeout(1500)   # every drill through the real chain: about 5 minutes alone, longer beside the other lanes
def test_readme_command_1_then_demo_passes_every_drill(lab_chain):
    """The README's path as a newcomer takes it: `lab/first-fix.sh` (command 1) leaves its serve running, then
    `remediator demo` runs every drill through that serve, with the token command 1 made (none is set, as on a fresh
    machine) and after command 1's own restart on api-server-01."""
    env, data, receivers = lab_chain
    env = {**{k: v for k, v in env.items() if k != "REMEDIATOR_TOKENS"}, "COLUMNS": "200"}
    first = subprocess.run(["bash", str(PROJECT_ROOT / "lab" / "first-fix.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
    try:
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert re.search(r"^== incident \S+: resolved$", first.stdout, re.M), first.stdout[-3000:]
        assert first.stdout.rstrip().splitlines()[-1].startswith("== the server keeps running")
        run = subprocess.run([str(REMEDIATOR), "demo"], env=env, capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, run.stdout + run.stderr + (data / "serve.log").read_text()[-3000:]
    finally:
        _stop(data / "serve.pid")
    assert "the engine keeps serving" in run.stdout
    report = json.loads((data / "chaos" / "report.json").read_text())
    drills = drills_of(load_catalog(PROJECT_ROOT / "playbooks"))
    assert [r["drill"] for r in report] == [name for name, _, _ in drills]
    for r in report:
        assert r["ok"], r
    assert (data / "chaos" / "report.md").read_text().count("| pass |") == len(report)
    fixed = [r for r in report if r["seconds_to_fix"] is not None]
    # the others must only escalate, or wait for a person with a diagnosis (Level 2)
    assert [r["drill"] for r in fixed] == [name for name, _, d in drills if d.state == "resolved"]
    slack_fixed = [b for b in receivers.received["slack"] if b["text"].startswith("Fixed")]
    assert len(slack_fixed) >= len(fixed) + 1   # and command 1's
    verify = subprocess.run([str(REMEDIATOR), "audit", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
    (corruption,) = [r for r in report if r["drill"] == "db-corruption"]
    page = receivers.wait_for("pagerduty", lambda b: b["dedup_key"] == corruption["incident"], timeout_s=30)
    assert page["event_action"] == "trigger"


def _stop(pid_file: Path, timeout_s: float = 60) -> None:
    """The serve command 1 left running: SIGTERM, then wait until it has drained and exited."""
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
