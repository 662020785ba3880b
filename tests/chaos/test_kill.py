"""SIGKILL `remediator serve` (and its ansible-playbook runs) at random moments during a storm, 20
times, restarting it each time; then let it drain. Every alert that got a 2xx is in the store, every
incident reached a final state, no playbook ran twice for one incident, a real run cut off by a
kill was never re-run without a person, and the audit chain is intact."""
import copy
import json
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.engine.model.states import FINAL_STATES
from tests.e2e.conftest import SAMPLES, Server, free_port
from tests.lab import on_host

pytestmark = pytest.mark.e2e
STORM = yaml.safe_load((Path(__file__).parent / "kill.yml").read_text())
TEMPLATE = json.loads((SAMPLES / "alertmanager-firing-grouped.json").read_text())


def _round_payload(n: int) -> bytes:
    """The storm's alerts with this round's fingerprints and start time, in the captured sample's envelope."""
    body = copy.deepcopy(TEMPLATE)
    starts = (datetime(2026, 11, 24, 3, 0, tzinfo=UTC) + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
    alerts = []
    for i, labels in enumerate(STORM["alerts"]):
        labels = {k: str(v).replace("{round}", str(n)) for k, v in labels.items()}
        alerts.append({**TEMPLATE["alerts"][0], "labels": labels, "annotations": {"description": f"kill round {n}"},
                       "startsAt": starts, "fingerprint": f"{n:04x}{i:04x}00c0ffee"})
    body.update(alerts=alerts, groupLabels={}, commonLabels={}, commonAnnotations={}, groupKey=f"{{}}:{{round=\"{n}\"}}")
    return json.dumps(body).encode()


def _wait_executing(server: Server, timeout_s: float) -> bool:
    """Whether an incident was seen in its real run (state executing) within the time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if server.client.get("/incidents", params={"state": "executing"}, timeout=5).json():
                return True
        except httpx.HTTPError:
            return False
        time.sleep(0.2)
    return False


def _post(server: Server, body: bytes) -> set[str]:
    """The fingerprints of an accepted (2xx) delivery; none when serve did not answer."""
    try:
        r = server.client.post("/webhook/alertmanager", content=body, headers={"content-type": "application/json"}, timeout=10)
    except httpx.HTTPError:
        return set()
    return {a["fingerprint"] for a in json.loads(body)["alerts"]} if r.status_code == 200 else set()


@pytest.mark.timeout(1500)   # about 4 minutes alone; on CI's two cores beside the other lanes, past 10
def test_sigkill_during_a_storm_loses_nothing_and_runs_nothing_twice(tmp_path, lab_fleet):
    receivers = lab_fleet
    rng = random.Random(20261124)
    port, data = free_port(), tmp_path / "serve"
    settings = {"approval_ttl_s": str(STORM["approval_ttl_s"]), "workers": "2"}
    server = Server(data, receivers, port, new_session=True, **settings)
    accepted: set[str] = set()
    kills = mid_run = 0
    try:
        for n in range(STORM["rounds"]):
            for host, unit in STORM["break"]:     # each round's ServiceDowns are real (the runbook reads first)
                on_host(host, "systemctl", "stop", unit)
            accepted |= _post(server, _round_payload(n))
            if n:
                accepted |= _post(server, _round_payload(n - 1))          # Alertmanager resends
            if rng.random() < STORM["mid_run_share"]:                     # kill during a real run: the state
                # executing is committed with the run's start, so a kill soon after it cuts that run off. Only the
                # first rounds' fixes run without a person (policy's restart limits), and on a busy CI machine the
                # read and the check before them can take over 30 s: wait long until one kill has landed.
                if _wait_executing(server, timeout_s=30 if mid_run else 180):
                    mid_run += 1
                    time.sleep(rng.uniform(0, 0.3))
            else:
                time.sleep(rng.uniform(*STORM["kill_after_s"]))           # kill whenever
            server.kill()
            assert server.left_behind() == [], "a killed serve's run outlived it"
            kills += 1
            server = Server(data, receivers, port, new_session=True, **settings)
        # Let it drain: interrupted runs wait for a person, who does not come (their approvals expire).
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states = [i["state"] for i in server.client.get("/incidents", params={"limit": 1000}).json()]
            if states and all(s in FINAL_STATES for s in states):
                break
            time.sleep(2)
        verify = server.cli("audit", "verify")
    finally:
        server.stop()

    assert kills == STORM["rounds"]
    db = sqlite3.connect(data / "remediator.db")
    stored = {fp for (fp,) in db.execute("SELECT fingerprint FROM alerts")}
    assert accepted and accepted <= stored, f"{len(accepted - stored)} acknowledged alerts are missing"
    assert db.execute("SELECT count(*) FROM deliveries WHERE ingested_at IS NULL").fetchone() == (0,)
    # and nothing is left in the inbox that the store does not have (acknowledged, never moved)
    moved = db.execute("SELECT max(id) FROM deliveries").fetchone()[0]
    inbox = sqlite3.connect(data / "remediator-inbox.db")
    assert inbox.execute("SELECT count(*) FROM inbox WHERE id > ?", (moved,)).fetchone() == (0,)
    incidents = db.execute("SELECT id, state, interrupted, reason FROM incidents").fetchall()
    assert all(state in FINAL_STATES for _, state, _, _ in incidents), [(i, s) for i, s, _, _ in incidents if s not in FINAL_STATES]

    applies = dict(db.execute("SELECT incident_id, count(*) FROM runs WHERE mode = 'apply' GROUP BY incident_id").fetchall())
    assert all(n == 1 for n in applies.values()), {i: n for i, n in applies.items() if n > 1}
    # ansible-runner's own record: one private data dir per real run; none twice for one incident.
    for incident_id, *_ in incidents:
        assert len(list((data / "runs").glob(f"{incident_id}-a*-apply"))) <= 1, incident_id

    interrupted = [(i, s, r) for i, s, cut, r in incidents if cut == "apply"]
    assert interrupted, f"no kill landed during a real run ({mid_run} kills just after one began): the test did not test that"
    for incident_id, state, _reason in interrupted:
        assert state != "resolved" or applies.get(incident_id, 0) <= 1
        events = [k for (k,) in db.execute("SELECT kind FROM audit_events WHERE incident_id = ? ORDER BY seq", (incident_id,))]
        assert "incident.interrupted" in events
        assert events.count("run.apply.started") == 1                       # never started again
    assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
    print(f"\n{kills} kills, {mid_run} just after a real run began; {len(accepted)} alerts acknowledged, all stored; "
          f"{len(incidents)} incidents, all final; "
          f"{sum(applies.values())} real runs, none twice; {len(interrupted)} real runs cut off by a kill, none re-run")
