"""Benchmark 3 (storm to drained) and the storm figure of 4 (memory).

1000 alerts making 100 incidents on the lab hosts: 3 of them a service really down (ServiceDown on
app-server-01, app-server-02 and api-server-01: each needs one restart), 97 an alert no runbook
knows (escalated without a run). Each incident gets 5 alerts (distinct fingerprints, the same
alertname and host: they correlate), every webhook is sent twice (Alertmanager's resends), 200
webhooks at concurrency 16 in random order, to `remediator serve` with --workers workers.

Figures: time from the first POST until every incident is final; real (apply) runs, which must
equal the incidents that need one (3); against the serial baseline: the sum of each incident's time
alone (each fix timed alone on a fresh server, one escalation timed alone, times 97), divided by
the workers. Peak RSS of the engine during the storm.

    .venv/bin/python -m bench.storm [--workers N] [--json FILE]
"""
from __future__ import annotations

import json
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bench.common import ROOT, client, lab_exec, lab_up, main, start_remediator, taken_in, wait_final

FIXES = [("app-server-01", "webapp"), ("app-server-02", "webapp"), ("api-server-01", "api-gateway")]
HOSTS = ["app-server-01", "app-server-02", "api-server-01", "db-primary-01"]
SAMPLE = json.loads((ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_text())
ALERTS_PER_INCIDENT, COPIES = 5, 2


def _incident_body(alertname: str, host: str, service: str) -> bytes:
    """One Alertmanager group: 5 alerts of one alertname on one host (distinct fingerprints)."""
    template = SAMPLE["alerts"][0]
    now = datetime.now(UTC).isoformat()
    alerts = [{**template, "fingerprint": secrets.token_hex(8), "startsAt": now,
               "labels": {"alertname": alertname, "instance": f"{host}:{9100 + k}", "job": f"storm-{k}",
                          "service": service, "severity": "critical"}} for k in range(ALERTS_PER_INCIDENT)]
    return json.dumps({**SAMPLE, "alerts": alerts, "groupKey": f"storm:{alertname}:{host}",
                       "groupLabels": {"alertname": alertname}, "commonLabels": {"alertname": alertname}}).encode()


def _incidents() -> list[tuple[str, str, str]]:
    """(alertname, host, service) of the 100 incidents: 3 fixes, 97 escalations."""
    out = [("ServiceDown", host, unit) for host, unit in FIXES]
    out += [(f"StormNoRunbook{n:02d}", HOSTS[n % len(HOSTS)], "none") for n in range(100 - len(FIXES))]
    return out


def _break(hosts: list[tuple[str, str]]) -> None:
    for host, unit in hosts:
        lab_exec(host, "systemctl", "stop", unit)


def _post(http, body: bytes) -> list[str]:
    r = http.post("/webhook/alertmanager", content=body, headers={"content-type": "application/json"})
    return taken_in(http, r)["incidents"]


def _alone(workers: int, alertname: str, host: str, service: str) -> float:
    """One incident on a fresh server, nothing else going on: seconds from POST to final."""
    if alertname == "ServiceDown":
        _break([(host, service)])
    server = start_remediator(inventory=str(ROOT / "inventory/lab.yml"), workers=str(workers))
    try:
        with client(server) as http:
            t0 = time.time()
            (incident_id,) = set(_post(http, _incident_body(alertname, host, service)))
            detail = wait_final(http, incident_id)
            return time.time() - t0 if detail else 0.0
    finally:
        server.stop()


def run(workers: int) -> dict:
    """Benchmark 3; prints its figures, returns them."""
    lab_up()
    incidents = _incidents()
    singles = [_alone(workers, *inc) for inc in incidents[:len(FIXES) + 1]]
    serial = sum(singles[:len(FIXES)]) + singles[-1] * (len(incidents) - len(FIXES))

    bodies = [body for inc in incidents for body in [_incident_body(*inc)] * COPIES]   # a resend is the same body
    random.Random(7).shuffle(bodies)
    _break(FIXES)
    server = start_remediator(inventory=str(ROOT / "inventory/lab.yml"), workers=str(workers))
    peak = [server.rss_mb()]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            peak.append(server.rss_mb())
    threading.Thread(target=sample, daemon=True).start()
    try:
        with client(server) as http:
            t0 = time.time()
            with ThreadPoolExecutor(16) as pool:
                ids = sorted({i for got in pool.map(lambda b: _post(http, b), bodies) for i in got})
            acked = time.time() - t0
            details = [wait_final(http, i, timeout_s=900, poll_s=0.2) for i in ids]
            drained = time.time() - t0
    finally:
        sampling.set()
        server.stop()
    states: dict[str, int] = {}
    for d in details:
        states[d["state"]] = states.get(d["state"], 0) + 1
    applies = sum(1 for d in details for r in d["runs"] if r["mode"] == "apply")
    fixed = all(lab_exec(host, "systemctl", "is-active", unit) == "active" for host, unit in FIXES)
    target = serial / workers * 1.2
    figures = {"alerts": len(bodies) * ALERTS_PER_INCIDENT, "webhooks": len(bodies), "incidents": len(ids),
               "states": states, "apply_runs": applies, "runs_needed": len(FIXES), "services_fixed": fixed,
               "acked_s": round(acked, 2), "drained_s": round(drained, 2), "serial_s": round(serial, 2),
               "singles_s": [round(s, 2) for s in singles], "workers": workers, "target_s": round(target, 2),
               "ratio": round(drained / (serial / workers), 3), "peak_rss_mb": round(max(peak), 1)}
    print(f"\nstorm: {figures['alerts']} alerts in {figures['webhooks']} webhooks -> {len(ids)} incidents {states}; "
          f"all acknowledged in {acked:.1f} s, all final in {drained:.1f} s")
    print(f"real runs {applies} for {len(FIXES)} incidents that need one (duplicates: {applies - len(FIXES)}); "
          f"services fixed: {fixed}")
    print(f"serial baseline {serial:.1f} s (fixes alone {', '.join(f'{s:.1f}' for s in singles[:-1])} s, an escalation "
          f"alone {singles[-1]:.2f} s x {len(incidents) - len(FIXES)}); / {workers} workers = {serial / workers:.1f} s; "
          f"drained/that = {figures['ratio']:.2f} (target at most 1.20: {'met' if figures['ratio'] <= 1.20 else 'MISSED'})")
    print(f"peak RSS during the storm: {figures['peak_rss_mb']:.0f} MB (target at most 300: "
          f"{'met' if figures['peak_rss_mb'] <= 300 else 'MISSED'}); duplicate runs: {applies - len(FIXES)} (target 0)")
    return figures


if __name__ == "__main__":
    main(__doc__, run, "--workers", type=int, default=2, help="REMEDIATOR_WORKERS: incidents worked on at once")
