"""Benchmark 1 (intake under a storm) and 4 (memory): remediator serve against the bare FastAPI baseline.

Both servers run as processes on 127.0.0.1, one after the other, with the same load from wrk
(bench/webhook.lua): webhooks of 1 and 100 alerts, distinct fingerprints (new alerts) and repeated
ones (duplicates), at concurrency 1, 16 and 64, for --seconds each. remediator runs with its real
store and durable acknowledgement (SQLite, WAL, synchronous=FULL: a 2xx only after the delivery
is fsynced). Prints acknowledged alerts/s and ack latency p50/p99 for each, the ratio
remediator/baseline, the rate at which remediator took the alerts into incidents (a cell ends when
its ingester is done too, as its store records it; with what was still waiting when the load stopped and how long it
took to drain; under a storm remediator paces its answers to its ingester, remediator/engine/intake/pacing.py),
peak RSS of serve and its ingester process (idle, and under load), and each target met or missed. Alerts name
hosts outside the inventory, so they are escalated as they are taken in, without Ansible: this measures intake.

    .venv/bin/python -m bench.intake [--seconds S] [--json FILE]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from bench.common import ROOT, TOKEN, Server, free_port, intake_backlog, last_taken_in, main, start_remediator, target


def load(port: int, per_request: int, distinct: bool, concurrency: int, seconds: float, salt: str,
         tid_base: int = 0) -> dict:
    """wrk against the webhook for `seconds`; its figures (requests, seconds, p50/p99 ms, failures)."""
    env = {**os.environ, "BENCH_ALERTS": str(per_request), "BENCH_DISTINCT": "1" if distinct else "0",
           "BENCH_SALT": salt, "BENCH_TOKEN": TOKEN, "BENCH_TID_BASE": str(tid_base)}
    out = subprocess.run(["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "30s",
                          "-s", str(ROOT / "bench/webhook.lua"), f"http://127.0.0.1:{port}/webhook/alertmanager"],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    return json.loads(line.removeprefix("BENCH "))


def run_all(kind: str, server: Server, seconds: float) -> list[dict]:
    rows = []
    peak = [server.rss_mb()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(server.rss_mb())
            time.sleep(0.2)
    threading.Thread(target=sample, daemon=True).start()
    newest = 0   # the newest delivery of the cells before
    for per_request in (1, 100):
        for distinct in (True, False):
            for concurrency in (1, 16, 64):
                started = time.time()
                got = load(server.port, per_request, distinct, concurrency, seconds,
                           f"{kind}-{per_request}-{int(distinct)}-{concurrency}")
                # remediator answers once a delivery is stored; its ingester may still be taking the
                # last ones into incidents: the cell ends when that is done too (when, its store says).
                loaded = time.time() - started
                left = intake_backlog(server) if kind == "remediator" else 0
                while kind == "remediator" and intake_backlog(server) > 0:
                    time.sleep(0.05)
                drained = loaded
                if kind == "remediator":
                    newest, last = last_taken_in(server, newest)
                    drained = last - started if last else loaded
                # Acknowledged: answered 2xx. A 503 (the backlog is full: Alertmanager sends it again) is quick, and
                # counting its alerts would make both rates look higher than they are.
                alerts = (got["requests"] - got["non_200"]) * per_request
                rows.append({"server": kind, "alerts_per_webhook": per_request, "fingerprints": "distinct" if distinct
                             else "duplicate", "concurrency": concurrency, "webhooks": got["requests"],
                             "failures": got["non_200"] + got["errors"],
                             "alerts_per_s": round(alerts / got["seconds"]),
                             "taken_in_per_s": round(alerts / max(drained, got["seconds"])),
                             "p50_ms": round(got["p50_ms"], 1), "p99_ms": round(got["p99_ms"], 1),
                             "backlog_at_end": int(left), "drain_s": round(max(0.0, drained - loaded), 2)})
                print(json.dumps(rows[-1]), flush=True)
    stop.set()
    rows.append({"server": kind, "peak_rss_mb": round(max(peak), 1)})
    return rows


def targets(rows: list[dict], peak_rss_mb: float) -> list[dict]:
    """Each intake target (docs/benchmarks.md, issue 32) against this run, met or MISSED."""
    def cell(per: int, distinct: bool, c: int) -> dict:
        return next(r for r in rows if (r["alerts_per_webhook"], r["fingerprints"], r["concurrency"]) ==
                    (per, "distinct" if distinct else "duplicate", c))
    one = cell(1, True, 16)
    out = [target("1-alert webhooks, c16: alerts/s acknowledged", one["alerts_per_s"], 1500, at_most=False),
           target("1-alert webhooks, c16: acknowledgement p99 ms", one["p99_ms"], 40, at_most=True)]
    for c in (16, 64):
        for per in (1, 100):
            r = cell(per, True, c)   # 3 % below: the ingester's last batch
            out.append(target(f"taken in / acknowledged, {per}-alert c{c}", round(r["taken_in_per_s"] / r["alerts_per_s"], 3),
                              0.97, at_most=False, shown=f"{r['taken_in_per_s']} of {r['alerts_per_s']}"))
    best = max(cell(100, True, c)["taken_in_per_s"] for c in (1, 16, 64))
    out += [target("100-alert webhooks: new alerts/s taken in", best, 20_000, at_most=False),
            target("serve + ingester peak RSS under the intake load, MB", round(peak_rss_mb), 200, at_most=True)]
    return out


def run(seconds: float) -> dict:
    """Benchmark 1 and the memory figures of 4; prints its table, returns every figure."""
    py = sys.executable
    base_port = free_port()
    baseline = Server([py, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(base_port), "--log-level", "warning",
                       "--no-access-log"], {**os.environ, "PYTHONPATH": str(ROOT)}, base_port)
    base_rows = run_all("baseline", baseline, seconds)
    baseline.stop()

    remediator = start_remediator()
    idle = remediator.rss_mb()
    rem_rows = run_all("remediator", remediator, seconds)
    remediator.stop()

    print("\n| webhook | fingerprints | concurrency | remediator acked alerts/s | baseline alerts/s | ratio | "
          "remediator taken in alerts/s | left waiting at the end, drained in s | remediator p50 / p99 ms | "
          "baseline p50 / p99 ms | failures (503: backlog full) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r, b in zip(rem_rows[:-1], base_rows[:-1], strict=False):
        r["ratio"] = round(r["alerts_per_s"] / b["alerts_per_s"], 3)
        print(f"| {r['alerts_per_webhook']} alert(s) | {r['fingerprints']} | {r['concurrency']} | {r['alerts_per_s']} | "
              f"{b['alerts_per_s']} | {r['ratio']:.2f} | {r['taken_in_per_s']} | {r['backlog_at_end']}, {r['drain_s']} | "
              f"{r['p50_ms']} / {r['p99_ms']} | "
              f"{b['p50_ms']} / {b['p99_ms']} | {r['failures']} |")
    peak, base_peak = rem_rows[-1]["peak_rss_mb"], base_rows[-1]["peak_rss_mb"]
    print(f"\npeak RSS: remediator idle {idle:.0f} MB, under load {peak:.0f} MB (serve and its ingester process); "
          f"baseline under load {base_peak:.0f} MB (ratio {peak / base_peak:.1f})")
    return {"baseline": base_rows, "remediator": rem_rows, "idle_rss_mb": round(idle, 1), "load_rss_mb": peak,
            "targets": targets(rem_rows[:-1], peak)}


if __name__ == "__main__":
    main(__doc__, run, "--seconds", type=float, default=5, help="load per cell (12 cells per server)")
