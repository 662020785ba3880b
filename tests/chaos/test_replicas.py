"""Three `remediator serve` replicas on one PostgreSQL, during a storm: SIGKILL a random replica (and its
ansible-playbook runs) at random moments, 20 times, half of them during a real run and aimed at the replica doing it,
starting it again each time; then let them drain. Every alert that got a 2xx from any replica is in the store, every
incident reaches a final state, no playbook ran twice for one incident, no host was worked by two incidents at once
(their runs never overlap in time, whichever replica ran them), the global cap (1 host at a time: cap_global) was
never exceeded (no two incidents' runs overlap at all), a real run cut off by a kill was never re-run without
a person, and the audit chain is one intact chain."""
import itertools
import json
import random
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from remediator.engine.model.states import FINAL_STATES
from tests.chaos.test_kill import _post, _round_payload
from tests.e2e.conftest import Server, free_port
from tests.lab import on_host
from tests.standins import Receivers

pytestmark = pytest.mark.e2e
STORM = yaml.safe_load((Path(__file__).parent / "kill.yml").read_text())
REPLICAS = 3


class Replicas:
    """N serve processes on one database, each with a data dir and a port of its own."""

    def __init__(self, root: Path, receivers: Receivers, url: str):
        self.root, self.receivers, self.url = root, receivers, url
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.servers = [self.start(n) for n in range(REPLICAS)]

    def start(self, n: int) -> Server:
        return Server(self.root / f"replica-{n}", self.receivers, self.ports[n], new_session=True, database_url=self.url,
                      approval_ttl_s=str(STORM["approval_ttl_s"]), workers="2", lease_ttl_s="6", cap_global="1")

    def running_apply(self, db) -> int | None:
        """The replica doing a real run now (by its lease's owner pid), if any."""
        with db.connect() as conn:
            owners = conn.execute(text("SELECT l.owner FROM leases l JOIN incidents i ON i.id = l.incident_id "
                                       "WHERE i.state = 'executing'")).scalars().all()
        pids = {int(o.split(":")[1]) for o in owners}
        return next((n for n, s in enumerate(self.servers) if s.pid in pids), None)


def _wait_apply(replicas: Replicas, db, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (n := replicas.running_apply(db)) is not None:
            return n
        time.sleep(0.2)
    return None


@pytest.mark.timeout(1500)   # about 4 minutes alone; on CI's two cores beside the other lanes, past 10
def test_sigkill_of_random_replicas_loses_nothing_runs_nothing_twice_and_books_no_host_twice(tmp_path, lab_fleet,
                                                                                              postgres_url):
    rng = random.Random(20261202)
    url = postgres_url
    db = create_engine(url)
    replicas = Replicas(tmp_path, lab_fleet, url)
    accepted: set[str] = set()
    kills, aimed = 0, 0
    try:
        for n in range(STORM["rounds"]):
            for host, unit in STORM["break"]:
                on_host(host, "systemctl", "stop", unit)
            accepted |= _post(rng.choice(replicas.servers), _round_payload(n))
            if n:
                accepted |= _post(rng.choice(replicas.servers), _round_payload(n - 1))     # Alertmanager resends
            victim = None
            if rng.random() < STORM["mid_run_share"]:
                victim = _wait_apply(replicas, db, timeout_s=30)                            # the one running it
                time.sleep(rng.uniform(0, 1))
                aimed += victim is not None
            else:
                time.sleep(rng.uniform(*STORM["kill_after_s"]))
            victim = rng.randrange(REPLICAS) if victim is None else victim
            replicas.servers[victim].kill()
            assert replicas.servers[victim].left_behind() == [], "a killed replica's run outlived it"
            kills += 1
            replicas.servers[victim] = replicas.start(victim)
        deadline = time.monotonic() + 600
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [i["state"] for i in replicas.servers[0].client.get("/incidents", params={"limit": 1000}).json()]
            if states and all(s in FINAL_STATES for s in states):
                break
            time.sleep(2)
        verify = replicas.servers[0].cli("audit", "verify")
        health = [s.client.get("/healthz").status_code for s in replicas.servers]
    finally:
        for s in replicas.servers:
            s.stop()

    assert kills == STORM["rounds"] and aimed, "no kill landed on a replica during its real run"
    with db.connect() as conn:
        stored = set(conn.execute(text("SELECT fingerprint FROM alerts")).scalars())
        assert accepted and accepted <= stored, f"{len(accepted - stored)} acknowledged alerts are missing"
        assert conn.execute(text("SELECT count(*) FROM deliveries WHERE ingested_at IS NULL")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM inbox")).scalar() == 0
        incidents = conn.execute(text("SELECT id, state, interrupted FROM incidents")).all()
        assert all(state in FINAL_STATES for _, state, _ in incidents), [i for i in incidents if i[1] not in FINAL_STATES]
        applies = dict(conn.execute(text("SELECT incident_id, count(*) FROM runs WHERE mode = 'apply' "
                                         "GROUP BY incident_id")).all())
        assert all(k == 1 for k in applies.values()), {i: k for i, k in applies.items() if k > 1}
        runs = conn.execute(text("SELECT incident_id, hosts, started_at, finished_at FROM runs")).all()
        started = dict(conn.execute(text("SELECT incident_id, count(*) FROM audit_events WHERE kind = "
                                         "'run.apply.started' GROUP BY incident_id")).all())
        assert conn.execute(text("SELECT count(*) FROM leases")).scalar() == 0
    for incident_id, *_ in incidents:   # ansible-runner's own record, in every replica's data dir (a replica that
        # took a cut-off run over ends it on the hosts from a stop-* dir under the run's name: not a run of the entry)
        real = [d for d in tmp_path.glob(f"replica-*/runs/{incident_id}-a*-apply") if (d / "artifacts").is_dir()]
        assert len(real) <= 1, real
    # A host is worked by one incident at a time: runs of different incidents on one host never overlap.
    by_host: dict[str, list[tuple]] = {}
    for incident_id, hosts, start, end in runs:
        for host in (hosts if isinstance(hosts, list) else json.loads(hosts)):
            by_host.setdefault(host, []).append((start, end, incident_id))
    for host, spans in by_host.items():
        for s1, e1, i1 in spans:
            for s2, e2, i2 in spans:
                assert i1 == i2 or e1 <= s2 or e2 <= s1, f"{host}: {i1} ran {s1}..{e1}, {i2} ran {s2}..{e2}"
    # The global cap of 1: one host worked on at a time across the replicas, so no two incidents' runs overlap at all.
    spans = sorted((start, end, incident_id, hosts) for incident_id, hosts, start, end in runs)
    for (s1, e1, i1, h1), (s2, e2, i2, h2) in itertools.combinations(spans, 2):
        assert i1 == i2 or e1 <= s2 or e2 <= s1, f"cap_global 1 exceeded: {i1} on {h1} {s1}..{e1}, {i2} on {h2} {s2}..{e2}"
    interrupted = [i for i, _, cut in incidents if cut == "apply"]
    assert interrupted, "no kill cut off a real run: the test did not test that"
    assert all(started.get(i) == 1 for i in interrupted), {i: started.get(i) for i in interrupted}
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
    assert health == [200] * REPLICAS
    print(f"\n{kills} kills ({aimed} at the replica running a real run); {len(accepted)} alerts acknowledged, all "
          f"stored; {len(incidents)} incidents, all final; {sum(applies.values())} real runs, none twice; "
          f"{len(interrupted)} cut off, none re-run; no host worked by two incidents at once, nor two hosts (cap_global 1)")
