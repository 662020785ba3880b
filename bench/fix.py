"""Benchmark 2: alert to verified fix, against bare ansible-playbook --check then ansible-playbook.

On a lab host, api-gateway is stopped, then:
- remediator: the captured ServiceDown alert, for that host, is posted to one running `remediator serve` (lab
  inventory, runbook planner, auto-allowed restart_service); the clock runs from the POST to the incident's
  `resolved` (diagnosed, planned, policy, check mode, real run, verified). Where the time went comes from the
  incident's own runs and timeline.
- baseline: `ansible-playbook --check --diff` then `ansible-playbook` of the same playbook with the same
  parameters on the same host: what a person typing the fix would run.
serve's first incident on each of three hosts is reported apart: it starts the warm Ansible and the host's
connection (docs/engine.md, "Reaching hosts"), as an engine pays once per host and idle period. Then --repeat
rounds, alternating, a host each (policy asks a person from the 4th restart of a unit on a host in an hour).
Medians are compared. Then one read-only run, bare and through the executor, the same way.

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

import httpx

from bench.common import ROOT, VENV_BIN, client, lab_exec, lab_up, main, start_remediator, taken_in, target, wait_final

HOSTS, UNIT = ("api-server-01", "app-server-01", "app-server-02"), "api-gateway"
SAMPLE = json.loads((ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_text())


def _alert_body(host: str) -> bytes:
    """The captured sample's api-server-01 alert, for this host, as a new alert (fresh fingerprint and startsAt)."""
    alert = next(a for a in SAMPLE["alerts"] if a["labels"]["instance"].startswith("api-server-01"))
    alert = {**alert, "labels": {**alert["labels"], "instance": f"{host}:8080"}, "fingerprint": secrets.token_hex(8),
             "startsAt": datetime.now(UTC).isoformat()}
    return json.dumps({**SAMPLE, "alerts": [alert]}).encode()


def _break(host: str) -> None:
    lab_exec(host, "systemctl", "stop", UNIT)
    assert lab_exec(host, "systemctl", "is-active", UNIT) != "active", f"{UNIT} did not stop on {host}"


def remediator_round(http: httpx.Client, host: str) -> dict:
    """One alert-to-verified-fix through a running `remediator serve`; seconds in total and per phase."""
    _break(host)
    t0 = time.time()
    r = http.post("/webhook/alertmanager", content=_alert_body(host), headers={"content-type": "application/json"})
    acked = time.time()
    (incident_id,) = taken_in(http, r)["incidents"]
    detail = wait_final(http, incident_id)
    done = time.time()
    assert detail["state"] == "resolved", f"{incident_id} ended {detail['state']}: {detail['reason']}"
    assert lab_exec(host, "systemctl", "is-active", UNIT) == "active"
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
    return {"host": host, "total_s": total, "phases": phases}


def baseline_round(host: str) -> dict:
    """ansible-playbook --check --diff, then ansible-playbook: the same fix typed by hand."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventory/lab.yml"), str(ROOT / "playbooks/restart_service.yml"),
            "-e", json.dumps({"target_hosts": [host], "restart_service_unit": UNIT, "restart_service_reason": "bench"})]
    _break(host)
    t0 = time.time()
    subprocess.run([*argv, "--check", "--diff"], check=True, capture_output=True, cwd=ROOT)
    checked = time.time()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    done = time.time()
    assert lab_exec(host, "systemctl", "is-active", UNIT) == "active"
    return {"total_s": done - t0, "phases": {"check": checked - t0, "real run": done - checked}}


def read_rounds(repeat: int) -> list[dict]:
    """One read-only run (service_status) by bare ansible-playbook and through remediator's executor (ansible-runner,
    its event files and parsing, the Preview; the warm Ansible): one executor for all rounds, as serve has one. The
    executor's first run (its warm Ansible starting, and the host's connection) is reported apart."""
    from remediator.engine.catalog.loader import load_catalog
    from remediator.engine.run.runner import AnsibleExecutor
    host = HOSTS[0]
    entry = load_catalog(ROOT / "playbooks").get("service_status")
    params = entry.validate_params({"unit": UNIT})
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventory/lab.yml"), str(entry.playbook),
            "-e", json.dumps({"target_hosts": host, **{f"service_status_{k}": v for k, v in params.items()}})]
    rounds = []
    with tempfile.TemporaryDirectory() as runs:
        executor = AnsibleExecutor(Path(runs), ROOT / "inventory/lab.yml")
        try:
            for i in range(repeat + 1):
                t0 = time.time()
                subprocess.run(argv, check=True, capture_output=True, cwd=ROOT,
                               env={**os.environ, "ANSIBLE_PIPELINING": "True"})
                bare = time.time() - t0
                t0 = time.time()
                result = executor.run(entry, params, [host], check=False, ident=f"bench-{i}", timeout_s=120)
                through = time.time() - t0
                assert result.reports.get(host), result.preview.summary
                rounds.append({"bare_s": bare, "executor_s": through, "first": i == 0})
        finally:
            executor.close()
    return rounds


def run(repeat: int) -> dict:
    """Benchmark 2; prints its figures, returns them."""
    lab_up()
    rem, first, base = [], [], []
    server = start_remediator(inventory=str(ROOT / "inventory/lab.yml"), workers="2")
    try:
        with client(server) as http:
            # serve's first incident on each host starts its warm Ansible (once) and the host's connection: what
            # an engine that has not touched the host within runner_warm_idle_s pays. Reported apart.
            for host in HOSTS:
                base.append(baseline_round(host))
                first.append(remediator_round(http, host))
            for i in range(repeat):   # a host each: policy asks a person from the 4th restart of a unit in an hour
                base.append(baseline_round(HOSTS[i % len(HOSTS)]))
                rem.append(remediator_round(http, HOSTS[i % len(HOSTS)]))
    finally:
        server.stop()
    rem_s = statistics.median(r["total_s"] for r in rem)
    first_s = statistics.median(r["total_s"] for r in first)
    base_s = statistics.median(b["total_s"] for b in base)
    print(f"\nalert to verified fix (median of {repeat}, serve running): remediator {rem_s:.2f} s, bare "
          f"ansible-playbook pair {base_s:.2f} s, ratio {rem_s / base_s:.2f}; serve's first incident on a host "
          f"{first_s:.2f} s ({first_s / base_s:.2f})")
    print("| where remediator's time goes | median s | first on a host |\n|---|---|---|")
    for name in rem[0]["phases"]:
        print(f"| {name} | {statistics.median(r['phases'][name] for r in rem):.2f} | "
              f"{statistics.median(r['phases'][name] for r in first):.2f} |")
    for name in base[0]["phases"]:
        print(f"| baseline: {name} | {statistics.median(b['phases'][name] for b in base):.2f} | |")
    reads = read_rounds(repeat)
    bare_run = statistics.median(o["bare_s"] for o in reads)
    executor_run = statistics.median(o["executor_s"] for o in reads if not o["first"])
    first_run = next(o["executor_s"] for o in reads if o["first"])
    print(f"one read-only run (service_status, median of {repeat}): bare ansible-playbook {bare_run:.2f} s, through "
          f"remediator's executor {executor_run:.2f} s: {executor_run - bare_run:+.2f} s a run; the executor's first "
          f"run (its warm Ansible starting, the host's connection) {first_run:.2f} s")
    targets = [target("alert -> verified fix, against the bare --check + real pair", round(rem_s / base_s, 3), 0.8,
                      at_most=True, shown=f"{rem_s:.2f} s / {base_s:.2f} s = {rem_s / base_s:.2f}"),
               target("one read-only run, against a bare ansible-playbook", round(executor_run / bare_run, 3), 0.5,
                      at_most=True, shown=f"{executor_run:.2f} s / {bare_run:.2f} s = {executor_run / bare_run:.2f}")]
    return {"remediator": rem, "first_on_a_host": first, "baseline": base, "one_run": reads,
            "remediator_median_s": round(rem_s, 3), "baseline_median_s": round(base_s, 3),
            "ratio": round(rem_s / base_s, 3), "targets": targets}


if __name__ == "__main__":
    main(__doc__, run, "--repeat", type=int, default=3, help="rounds; medians are compared")
