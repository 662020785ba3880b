"""Benchmark 1 (intake under a storm) and 4 (memory): remediator serve against the bare FastAPI baseline.

Both servers run as processes on 127.0.0.1, one after the other, with the same load: webhooks of 1
and 100 alerts, distinct fingerprints (new alerts) and repeated ones (duplicates), at concurrency 1,
16 and 64. remediator runs with its real store and durable acknowledgement (SQLite, WAL,
synchronous=FULL: a 2xx only after fsync). Prints alerts/s and ack latency p50/p99 for each, the
ratio remediator/baseline, and peak RSS (idle, and under load). Alerts name hosts outside the
inventory, so the pipeline escalates them without running Ansible: this measures intake.

    .venv/bin/python bench/intake.py [--requests N] [--json FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_text())
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payloads(n_requests: int, per_request: int, distinct: bool, salt: str) -> list[bytes]:
    """Webhook bodies in the captured sample's envelope; distinct: every alert new; else the same body again."""
    out = []
    for r in range(n_requests):
        k = r if distinct else 0
        alerts = [{**SAMPLE["alerts"][0], "fingerprint": f"{abs(hash((salt, k, i))) % 16**16:016x}",
                   "labels": {"alertname": "ServiceDown", "instance": f"bench-{salt}-{k}-{i}.example:9100",
                              "service": "api", "severity": "critical"}} for i in range(per_request)]
        out.append(json.dumps({**SAMPLE, "alerts": alerts, "groupKey": f"bench-{salt}-{k}"}).encode())
    return out


class Server:
    """A server process; peak RSS (VmHWM) of it and its children read from /proc."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int):
        self.port = port
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503):
                    time.sleep(1)
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{argv} did not start")

    def rss_mb(self, field: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def load(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """Send every body with `concurrency` in flight; (seconds, latencies in ms, non-2xx count)."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as client:
        async def worker():
            nonlocal failures
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/webhook/alertmanager", content=body, headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                failures += r.status_code != 200
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def run_all(kind: str, server: Server, requests: int) -> list[dict]:
    rows = []
    peak = [server.rss_mb()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(server.rss_mb())
            time.sleep(0.2)
    threading.Thread(target=sample, daemon=True).start()
    for per_request in (1, 100):
        n = requests if per_request == 1 else max(20, requests // 20)
        for distinct in (True, False):
            for concurrency in (1, 16, 64):
                bodies = payloads(n, per_request, distinct, f"{kind}-{per_request}-{distinct}-{concurrency}")
                seconds, lat, failures = asyncio.run(load(server.port, bodies, concurrency))
                rows.append({"server": kind, "alerts_per_webhook": per_request, "fingerprints": "distinct" if distinct
                             else "duplicate", "concurrency": concurrency, "webhooks": n, "failures": failures,
                             "alerts_per_s": round(n * per_request / seconds), "p50_ms": round(p(lat, 50), 1),
                             "p99_ms": round(p(lat, 99), 1)})
                print(json.dumps(rows[-1]), flush=True)
    stop.set()
    rows.append({"server": kind, "peak_rss_mb": round(max(peak), 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1000, help="webhooks of one alert per cell (100-alert cells: /20)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    py = sys.executable
    base_port = free_port()
    baseline = Server([py, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(base_port), "--log-level", "warning",
                       "--no-access-log"], {**os.environ, "PYTHONPATH": str(ROOT)}, base_port)
    base_rows = run_all("baseline", baseline, args.requests)
    baseline.stop()

    data = Path(tempfile.mkdtemp(prefix="remediator-bench-"))
    port = free_port()
    env = {**os.environ, "REMEDIATOR_DATA_DIR": str(data), "REMEDIATOR_TOKENS": TOKEN, "REMEDIATOR_PORT": str(port),
           "REMEDIATOR_SQLITE_SYNCHRONOUS": "FULL"}
    remediator = Server([str(Path(py).parent / "remediator"), "serve", "--log-level", "warning"], env, port)
    idle = remediator.rss_mb()
    rem_rows = run_all("remediator", remediator, args.requests)
    remediator.stop()

    print("\n| webhook | fingerprints | concurrency | remediator alerts/s | baseline alerts/s | ratio | "
          "remediator p50 / p99 ms | baseline p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r, b in zip(rem_rows[:-1], base_rows[:-1]):
        print(f"| {r['alerts_per_webhook']} alert(s) | {r['fingerprints']} | {r['concurrency']} | {r['alerts_per_s']} | "
              f"{b['alerts_per_s']} | {r['alerts_per_s'] / b['alerts_per_s']:.2f} | {r['p50_ms']} / {r['p99_ms']} | "
              f"{b['p50_ms']} / {b['p99_ms']} |")
    print(f"\npeak RSS: remediator idle {idle:.0f} MB, under load {rem_rows[-1]['peak_rss_mb']:.0f} MB; "
          f"baseline under load {base_rows[-1]['peak_rss_mb']:.0f} MB "
          f"(ratio {rem_rows[-1]['peak_rss_mb'] / base_rows[-1]['peak_rss_mb']:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"baseline": base_rows, "remediator": rem_rows, "idle_rss_mb": idle}, indent=2))


if __name__ == "__main__":
    main()
