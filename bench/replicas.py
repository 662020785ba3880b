"""Benchmark 6: replicas. Intake and the storm with 1, 2 and 3 `remediator serve` replicas on one PostgreSQL, beside
one serve on SQLite (the baseline), in the same run.

Intake: wrk against every replica at once (a total concurrency of 16, split among them) with 100-alert webhooks of
new fingerprints for --seconds; acknowledged alerts/s, the worst p99, how long the last ones took to be taken in, and
in the store: every acknowledged alert stored, none lost. Storm: bench/storm.py's 1000 alerts (100 incidents,
3 services really down on lab hosts) posted to the replicas in turn, each replica with 2 workers; time until every
incident is final and the real runs (3 needed; more is a duplicate). Ratios are against the one serve on SQLite.
On 2 cores more replicas add processes, not cores: the point is that nothing regresses much and nothing duplicates,
not linear scaling (docs/benchmarks.md). PostgreSQL is a throwaway cluster (tests/postgres.py), fsync on.

    .venv/bin/python -m bench.replicas [--seconds S] [--json FILE]
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from bench import storm
from bench.common import ROOT, Server, client, intake_backlog, lab_exec, lab_up, main, start_remediator, wait_final
from bench.intake import load
from tests.postgres import Cluster

SETUPS = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 3)]
CONCURRENCY = 16


def _replicas(kind: str, n: int, cluster: Cluster, **settings: str) -> tuple[list[Server], str]:
    """n serves on one store (a fresh PostgreSQL database, or SQLite in the first one's data dir); its URL."""
    if kind == "sqlite":
        server = start_remediator(**settings)
        return [server], f"sqlite:///{server.log.parent / 'remediator.db'}"     # start_remediator's data dir
    url = cluster.new_database()
    return [start_remediator(database_url=url, **settings) for _ in range(n)], url


def _counts(url: str) -> dict[str, int]:
    """What the store holds: deliveries (each acknowledged), alerts, real runs."""
    db = create_engine(url)
    with db.connect() as conn:
        out = {name: int(conn.execute(text(sql)).scalar() or 0) for name, sql in (
            ("deliveries", "SELECT count(*) FROM deliveries"), ("alerts", "SELECT count(*) FROM alerts"),
("applies", "SELECT count(*) FROM runs WHERE mode = 'apply'"))}
    db.dispose()
    return out


def intake(kind: str, n: int, cluster: Cluster, seconds: float) -> dict:
    servers, url = _replicas(kind, n, cluster)
    try:
        shares = [CONCURRENCY // n + (k < CONCURRENCY % n) for k in range(n)]
        got: list[dict] = [{} for _ in servers]

        def one(k: int) -> None:
            got[k] = load(servers[k].port, 100, True, shares[k], seconds, f"{kind}-{n}-{k}", tid_base=100 * k)
        started = time.monotonic()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        loaded = time.monotonic() - started
        while intake_backlog(servers[0]) > 0:
            time.sleep(0.05)
        drained = time.monotonic() - started
    finally:
        for s in servers:
            s.stop()
    # every alert is new (and on a host outside the inventory: escalated as it is taken in); stored once by its identity
    held = _counts(url)
    sent = held["deliveries"] * 100    # every 2xx (wrk's count stops at its deadline; the store has the late ones too)
    # wrk's count has the 503s (a full backlog) in it: the store's deliveries are what was acknowledged
    return {"store": kind, "replicas": n, "alerts_per_s": round(sent / loaded), "taken_in_per_s": round(sent / drained),
            "p99_ms": round(max(g["p99_ms"] for g in got), 1),
            "drain_s": round(drained - loaded, 2), "failures": sum(g["non_200"] + g["errors"] for g in got),
            "acknowledged": sent, "stored": held["alerts"], "lost": sent - held["alerts"]}


def storm_on(kind: str, n: int, cluster: Cluster) -> dict:
    bodies = [b for inc in storm._incidents() for b in [storm._incident_body(*inc)] * storm.COPIES]
    random.Random(7).shuffle(bodies)
    storm._break(storm.FIXES)
    servers, url = _replicas(kind, n, cluster, inventory=str(ROOT / "inventory/lab.yml"), workers="2")
    https = [client(s) for s in servers]
    turn = itertools.cycle(https)
    try:
        t0 = time.time()
        with ThreadPoolExecutor(16) as pool:
            ids = sorted({i for got in pool.map(lambda b: storm._post(next(turn), b), bodies) for i in got})
        details = [wait_final(https[0], i, timeout_s=900, poll_s=0.2) for i in ids]
        drained = time.time() - t0
    finally:
        for h in https:
            h.close()
        for s in servers:
            s.stop()
    applies = _counts(url)["applies"]
    fixed = all(lab_exec(host, "systemctl", "is-active", unit) == "active" for host, unit in storm.FIXES)
    return {"store": kind, "replicas": n, "incidents": len(ids), "final": len(details), "drained_s": round(drained, 1),
            "apply_runs": applies, "duplicates": applies - len(storm.FIXES), "services_fixed": fixed}


def run(seconds: float) -> dict:
    """Benchmark 5; prints its tables, returns every figure."""
    cluster = Cluster()
    try:
        rows = [intake(kind, n, cluster, seconds) for kind, n in SETUPS]
        base = rows[0]
        print("\n| store | replicas | acked alerts/s | ratio | taken in alerts/s | ratio | worst p99 ms | drained after "
              "the load, s | 503s | alerts acknowledged, stored, lost |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['store']} | {r['replicas']} | {r['alerts_per_s']} | {r['alerts_per_s'] / base['alerts_per_s']:.2f} "
                  f"| {r['taken_in_per_s']} | {r['taken_in_per_s'] / base['taken_in_per_s']:.2f} | {r['p99_ms']} | "
                  f"{r['drain_s']} | {r['failures']} | {r['acknowledged']}, {r['stored']}, {r['lost']} |")
        lab_up()
        storms = [storm_on(kind, n, cluster) for kind, n in SETUPS]
        sbase = storms[0]
        print("\n| store | replicas (2 workers each) | incidents, all final | drained s | ratio | real runs (3 "
              "needed) | duplicates | services fixed |")
        print("|---|---|---|---|---|---|---|---|")
        for s in storms:
            print(f"| {s['store']} | {s['replicas']} | {s['incidents']}, {s['final'] == s['incidents']} | "
                  f"{s['drained_s']} | {s['drained_s'] / sbase['drained_s']:.2f} | {s['apply_runs']} | "
                  f"{s['duplicates']} | {s['services_fixed']} |")
    finally:
        cluster.stop()
    return {"intake": rows, "storm": storms}


if __name__ == "__main__":
    main(__doc__, run, "--seconds", type=float, default=10, help="intake load per setup")
