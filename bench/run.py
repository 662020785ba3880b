"""Every benchmark, one after the other, and one JSON file of their figures.

    .venv/bin/python -m bench.run [--seconds S] [--repeat N] [--workers N] [--json var/bench.json]

1 intake under a storm (bench/intake.py, against bare FastAPI), 2 alert to verified fix
(bench/fix.py, against bare ansible-playbook), 3 storm to drained (bench/storm.py, against the
serial sum), 4 memory (idle and under load, in 1 and 3), 5 fault to verified fix through the lab's
Prometheus and Alertmanager (bench/drills.py, against its target), 6 intake and storm with 1, 2 and 3 replicas on
PostgreSQL (bench/replicas.py, against one serve on SQLite). Needs the lab (bash lab/setup.sh) and wrk.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench import drills, fix, intake, replicas, storm
from bench.common import ROOT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5, help="benchmark 1: load per cell")
    ap.add_argument("--repeat", type=int, default=3, help="benchmark 2: rounds (medians are compared)")
    ap.add_argument("--workers", type=int, default=2, help="benchmark 3: REMEDIATOR_WORKERS")
    ap.add_argument("--json", type=Path, default=ROOT / "var/bench.json")
    args = ap.parse_args()
    figures = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    print("== 1. intake under a storm, and memory")
    figures["intake"] = intake.run(args.seconds)
    print("\n== 2. alert to verified fix")
    figures["fix"] = fix.run(args.repeat)
    print("\n== 3. storm to drained, and memory")
    figures["storm"] = storm.run(args.workers)
    print("\n== 5. fault to verified fix, through Prometheus and Alertmanager")
    figures["drills"] = drills.run()
    print("\n== 6. replicas on PostgreSQL: intake and the storm")
    figures["replicas"] = replicas.run(args.seconds * 2)
    judged = [t for part in figures.values() if isinstance(part, dict) for t in part.get("targets", [])]
    print(f"\n== targets: {sum(t['met'] for t in judged)} of {len(judged)} met\n| target | this run | |\n|---|---|---|")
    for t in judged:
        print(f"| {t['what']} {t['target']} | {t['value']} | {'met' if t['met'] else 'MISSED'} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    print(f"\nevery figure: {args.json}")


if __name__ == "__main__":
    main()
