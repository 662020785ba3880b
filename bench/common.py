"""What the benchmarks share: servers as processes on loopback, their memory, the lab, the clock."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from remediator.engine.lab.harness import LAB_BLAST, ServeProcess, free_port
from remediator.engine.model.states import FINAL_STATES

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdefgh"
VENV_BIN = Path(sys.executable).parent
FINAL = {s.value for s in FINAL_STATES}


class Server(ServeProcess):
    """A server process on loopback (remediator/engine/lab/harness.py); its RSS read from /proc."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path | None = None):
        log = log or Path(tempfile.mkdtemp(prefix="bench-")) / "server.log"
        # a bare server has no store: 503 from its /healthz still means it answers
        super().__init__(env, port, log, argv=argv, healthy_codes=(200, 503), cwd=ROOT)
        time.sleep(1)


def start_remediator(**settings: str) -> Server:
    """`remediator serve` on a free port with a store of its own; settings as REMEDIATOR_<NAME>."""
    data = Path(tempfile.mkdtemp(prefix="remediator-bench-"))
    port = free_port()
    env = {**os.environ, **LAB_BLAST, "REMEDIATOR_DATA_DIR": str(data), "REMEDIATOR_TOKENS": TOKEN, "REMEDIATOR_PORT": str(port),
           "REMEDIATOR_SQLITE_SYNCHRONOUS": "FULL", "COLUMNS": "200",
           **{f"REMEDIATOR_{k.upper()}": v for k, v in settings.items()}}
    return Server([str(VENV_BIN / "remediator"), "serve", "--log-level", "warning"], env, port, log=data / "serve.log")


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def wait_final(http: httpx.Client, incident_id: str, timeout_s: float = 300, poll_s: float = 0.05) -> dict:
    """Poll an incident until its state is final; its detail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = http.get(f"/incidents/{incident_id}").json()
        if detail["state"] in FINAL:
            return detail
        time.sleep(poll_s)
    raise TimeoutError(f"incident {incident_id} is not final after {timeout_s} s: {detail['state']}")


def lab_exec(host: str, *argv: str) -> str:
    """Run a command in a lab container (to break a service before a fix)."""
    return subprocess.run(["podman", "exec", f"remediator-lab-{host}", *argv], capture_output=True, text=True).stdout.strip()


def lab_up() -> None:
    """The lab's hosts (alerts are posted straight to the server: no Prometheus or Alertmanager left running)."""
    subprocess.run([str(VENV_BIN / "remediator"), "lab", "up", "--no-monitoring"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def taken_in(http: httpx.Client, response: httpx.Response, timeout_s: float = 60) -> dict:
    """What an acknowledged webhook became (GET /deliveries/{id}), once the ingester took it in."""
    response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = http.get(f"/deliveries/{response.json()['delivery']}")
        if answer.status_code == 503:     # a busy store: ask again
            time.sleep(0.1)
            continue
        answer.raise_for_status()
        delivery = answer.json()
        if delivery["ingested"]:
            return delivery
        time.sleep(0.01)
    raise TimeoutError(f"delivery {response.json()} not taken in after {timeout_s} s")


def intake_backlog(server: Server) -> float:
    """remediator_intake_backlog: alerts acknowledged, not yet taken into incidents."""
    for line in httpx.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith("remediator_intake_backlog "):
            return float(line.split()[1])
    raise RuntimeError("no remediator_intake_backlog in /metrics")


def last_taken_in(server: Server, after: int) -> tuple[int, float | None]:
    """The newest delivery a `start_remediator` server stored, and when the ingester took in the last of those past
    `after` (seconds since the epoch; None: none yet). Read from its store, not its /metrics: a scrape under load
    answers a tenth of a second late, which a 5 s cell would count as the ingester's."""
    db = server.log.parent / "remediator.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        newest, last = con.execute("SELECT max(id), max(ingested_at) FROM deliveries WHERE id > ?", (after,)).fetchone()
    when = datetime.fromisoformat(last).replace(tzinfo=UTC).timestamp() if last else None
    return newest or after, when


def target(what: str, value: float, goal: float, *, at_most: bool, shown: str = "") -> dict[str, Any]:
    """One figure against its target (docs/benchmarks.md, issue 32's "Done when"): printed as met or MISSED, and
    returned for the run's JSON and its closing table (bench/run.py)."""
    met = value <= goal if at_most else value >= goal
    bound = f"{'<=' if at_most else '>='} {goal:g}"
    print(f"  target: {what}: {shown or f'{value:g}'} ({bound}): {'met' if met else 'MISSED'}")
    return {"what": what, "value": value, "target": bound, "met": met}


def main(doc: str, run: Callable[[Any], dict], option: str, **spec: Any) -> None:
    """A benchmark's own command: the one option its `run` takes, and --json to keep the figures."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument(option, **spec)
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    figures = run(getattr(args, option.lstrip("-")))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
