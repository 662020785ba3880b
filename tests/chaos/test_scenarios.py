"""The fault scenarios (lab/scenarios/) through the real chain: `remediator lab up`, then `remediator scenarios run`,
which starts `remediator serve`, breaks the lab's hosts as a fleet breaks, and judges each answer by the host's own
probes and every real run remediator made: handled right, and never made worse. What this run recorded (--record) is
replayed by `remediator eval` to the same answers: the eval's lab cases stand for this lab, not only for the day they
were committed."""
import json
import subprocess

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.lab.scenarios import load_scenarios
from tests.chaos.conftest import REMEDIATOR

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(1500)
def test_every_scenario_is_handled_right_and_none_is_made_worse(lab_chain):
    env, data, receivers = lab_chain
    recorded = data / "recorded"
    run = subprocess.run([str(REMEDIATOR), "scenarios", "run", "--record", str(recorded)], env={**env, "COLUMNS": "200"},
                         capture_output=True, text=True, timeout=1500)
    serve_log = (data / "scenarios-serve.log").read_text()[-3000:]
    assert run.returncode == 0, run.stdout + run.stderr[-5000:] + serve_log
    report = json.loads((data / "scenarios" / "report.json").read_text())
    scenarios = load_scenarios(load_catalog(PROJECT_ROOT / "playbooks"))
    assert [r["id"] for r in report["results"]] == [s.id for s in scenarios]
    for r in report["results"]:
        assert r["right"] and not r["worse"], r
    summary = report["summary"]
    assert (summary["right"], summary["worse"], summary["right_pct"]) == (len(scenarios), 0, 100.0)
    assert f"handled right {len(scenarios)}/{len(scenarios)} (100.0 %), made worse 0" in run.stdout
    # each automatic fix was told, and every escalation paged
    fixed = [r for r in report["results"] if r["fixed"]]
    assert len([b for b in receivers.received["slack"] if b["text"].startswith("Fixed")]) >= len(fixed)
    for r in report["results"]:
        if r["expected"] == "escalated":
            receivers.wait_for("pagerduty", lambda b, r=r: b["dedup_key"] == r["incident"], timeout_s=30)
    replay = subprocess.run([str(REMEDIATOR), "eval", "--planner", "runbook", "--json"],
                            env={**env, "REMEDIATOR_EVALS_DIR": str(recorded)}, capture_output=True, text=True)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    replayed = json.loads(replay.stdout)["summary"]
    assert (replayed["plain"], replayed["plain_right"], replayed["made_worse"]) == (len(scenarios), len(scenarios), 0)
    verify = subprocess.run([str(REMEDIATOR), "audit", "verify"], env=env, capture_output=True, text=True)
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
