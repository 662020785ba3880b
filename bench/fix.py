"""Benchmark 2: alert to verified fix, against bare ansible-playbook --check then ansible-playbook.

On the lab host api-server-01, api-gateway is stopped, then:
- remediator: the captured ServiceDown alert is posted to `remediator serve` (lab inventory, runbook
  planner, auto-allowed restart_service); the clock runs from the POST to the incident's `resolved`
  (diagnosed, planned, policy, check mode, real run, verified). Where the time went comes from the
  incident's own runs and timeline.
- baseline: `ansible-playbook --check --diff` then `ansible-playbook` of the same playbook with the same
  parameters on the same host: what a person typing the fix would run.
Alternating, --repeat times each (3 by default: policy asks a person from the 4th restart of a unit in
an hour, so every remediator round has a store of its own). Medians are compared.

    .venv/bin/python -m bench.fix [--repeat N] [--json FILE]
"""
from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import ROOT, VENV_BIN, client, lab_exec, lab_up, main, start_remediator, taken_in, target, wait_final

HOST, UNIT = "api-server-01", "api-gateway"
SAMPLE = json.loads((ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_text())


def _alert_body() -> bytes:
    """The captured sample's api-server-01 alert, as a new alert (fresh fingerprint and startsAt)."""
    alert = next(a for a in SAMPLE["alerts"] if a["labels"]["instance"].startswith(HOST))
    alert = {**alert, "fingerprint": secrets.token_hex(8), "startsAt": datetime.now(UTC).isoformat()}
    return json.dumps({**SAMPLE, "alerts": [alert]}).encode()


def _break() -> None:
    lab_exec(HOST, "systemctl", "stop", UNIT)
    assert lab_exec(HOST, "systemctl", "is-active", UNIT) != "active", f"{UNIT} did not stop"


def remediator_round() -> dict:
    """One alert-to-verified-fix through `remediator serve`; seconds in total and per phase."""
    server = start_remediator(inventory=str(ROOT / "inventory/lab.yml"), workers="2")
    try:
        with client(server) as http:
            _break()
            t0 = time.time()
            r = http.post("/webhook/alertmanager", content=_alert_body(), headers={"content-type": "application/json"})
            acked = time.time()
            (incident_id,) = taken_in(http, r)["incidents"]
            detail = wait_final(http, incident_id)
            done = time.time()
    finally:
        server.stop()
    assert detail["state"] == "resolved", f"{incident_id} ended {detail['state']}: {detail['reason']}"
    assert lab_exec(HOST, "systemctl", "is-active", UNIT) == "active"
    runs: dict[str, float] = {}
    check_start = min(datetime.fromisoformat(r["started_at"]).timestamp() for r in detail["runs"] if r["mode"] == "check")
    for run in detail["runs"]:
        ended = datetime.fromisoformat(run["started_at"]).timestamp() + (run["duration_s"] or 0.0)
        # a diagnostic that ended before the check run began was read before choosing (the runbook's gate)
        mode = "gate" if run["mode"] == "diagnose" and ended <= check_start + 0.05 else run["mode"]
        runs[mode] = runs.get(mode, 0.0) + (run["duration_s"] or 0.0)
    claimed = next(datetime.fromisoformat(e["at"]).timestamp() for e in detail["timeline"] if e["kind"] == "incident.claimed")
    total = done - t0
    # The entry's diagnostics run beside the check run: only what they take beyond it is on the path.
    phases = {"intake (POST to 2xx)": acked - t0, "queue (2xx to claimed)": claimed - acked,
              "diagnose before choosing (the runbook's evidence gate)": runs.get("gate", 0.0),
              "check run": runs.get("check", 0.0),
              "diagnostics beyond the check run": max(0.0, runs.get("diagnose", 0.0) - runs.get("check", 0.0)),
              "real run": runs.get("apply", 0.0), "verify runs": runs.get("verify", 0.0)}
    phases["plan, policy, store, polling"] = total - sum(phases.values())
    return {"total_s": total, "phases": phases}


def baseline_round() -> dict:
    """ansible-playbook --check --diff, then ansible-playbook: the same fix typed by hand."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventory/lab.yml"), str(ROOT / "playbooks/restart_service.yml"),
            "-e", json.dumps({"target_hosts": [HOST], "restart_service_unit": UNIT, "restart_service_reason": "bench"})]
    _break()
    t0 = time.time()
    subprocess.run([*argv, "--check", "--diff"], check=True, capture_output=True, cwd=ROOT)
    checked = time.time()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    done = time.time()
    assert lab_exec(HOST, "systemctl", "is-active", UNIT) == "active"
    return {"total_s": done - t0, "phases": {"check": checked - t0, "real run": done - checked}}


def overhead_round() -> dict:
    """One read-only run (service_status) by bare ansible-playbook and through remediator's executor
    (ansible-runner: its process, event files and parsing, the Preview): what a run costs beyond Ansible."""
    from remediator.engine.catalog.loader import load_catalog
    from remediator.engine.run.runner import AnsibleExecutor
    entry = load_catalog(ROOT / "playbooks").get("service_status")
    params = entry.validate_params({"unit": UNIT})
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventory/lab.yml"), str(entry.playbook),
            "-e", json.dumps({"target_hosts": HOST, **{f"service_status_{k}": v for k, v in params.items()}})]
    t0 = time.time()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env={**os.environ, "ANSIBLE_PIPELINING": "True"})
    bare = time.time() - t0
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.time()
        result = AnsibleExecutor(Path(runs), ROOT / "inventory/lab.yml").run(
            entry, params, [HOST], check=False, ident=f"bench-{secrets.token_hex(3)}", timeout_s=120)
        through = time.time() - t0
    assert result.reports.get(HOST), result.preview.summary
    return {"bare_s": bare, "executor_s": through}


def run(repeat: int) -> dict:
    """Benchmark 2; prints its figures, returns them."""
    lab_up()
    rem, base = [], []
    for _ in range(repeat):
        base.append(baseline_round())
        rem.append(remediator_round())
    rem_s = statistics.median(r["total_s"] for r in rem)
    base_s = statistics.median(b["total_s"] for b in base)
    print(f"\nalert to verified fix (median of {repeat}): remediator {rem_s:.2f} s, bare ansible-playbook pair "
          f"{base_s:.2f} s, ratio {rem_s / base_s:.2f}")
    print("| where remediator's time goes | median s |\n|---|---|")
    for name in rem[0]["phases"]:
        print(f"| {name} | {statistics.median(r['phases'][name] for r in rem):.2f} |")
    for name in base[0]["phases"]:
        print(f"| baseline: {name} | {statistics.median(b['phases'][name] for b in base):.2f} |")
    overhead = [overhead_round() for _ in range(repeat)]
    bare_run = statistics.median(o["bare_s"] for o in overhead)
    executor_run = statistics.median(o["executor_s"] for o in overhead)
    print(f"one read-only run (service_status, median of {repeat}): bare ansible-playbook {bare_run:.2f} s, through "
          f"remediator's executor (ansible-runner) {executor_run:.2f} s: {executor_run - bare_run:+.2f} s a run")
    targets = [target("alert -> verified fix, against the bare --check + real pair", round(rem_s / base_s, 3), 0.8,
                      at_most=True, shown=f"{rem_s:.2f} s / {base_s:.2f} s = {rem_s / base_s:.2f}"),
               target("one read-only run, against a bare ansible-playbook", round(executor_run / bare_run, 3), 0.5,
                      at_most=True, shown=f"{executor_run:.2f} s / {bare_run:.2f} s = {executor_run / bare_run:.2f}")]
    return {"remediator": rem, "baseline": base, "one_run": overhead, "remediator_median_s": round(rem_s, 3),
            "baseline_median_s": round(base_s, 3), "ratio": round(rem_s / base_s, 3), "targets": targets}


if __name__ == "__main__":
    main(__doc__, run, "--repeat", type=int, default=3, help="rounds; medians are compared")
