"""Fail closed: two replicas on one PostgreSQL, and PostgreSQL stops for 10 s. Meanwhile every webhook is answered 503
(Alertmanager keeps the alert and retries), never a 2xx for what is not committed, and /healthz says the replica is
unwell; when PostgreSQL is back both recover by themselves, take in what comes next, and everything acknowledged
before the outage is there, in one intact audit chain."""
import json
import time

import httpx
import pytest

from tests.chaos.test_kill import _round_payload
from tests.e2e.conftest import Server, free_port
from tests.postgres import Cluster
from tests.standins import Receivers

pytestmark = pytest.mark.e2e


def _code(server: Server, body: bytes) -> int:
    try:
        return server.client.post("/webhook/alertmanager", content=body, headers={"content-type": "application/json"},
                                  timeout=15).status_code
    except httpx.HTTPError:
        return 0


def _healthy(server: Server) -> int:
    try:
        return server.client.get("/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_postgresql_down_for_10_s_means_503_then_recovery_with_nothing_lost(tmp_path):
    cluster = Cluster()
    url = cluster.new_database()
    with Receivers() as receivers:
        replicas = [Server(tmp_path / f"replica-{n}", receivers, free_port(), database_url=url, lease_ttl_s="6")
                    for n in range(2)]
        try:
            before = _round_payload(0)
            assert _code(replicas[0], before) == 200
            cluster.down()
            codes, unwell = [], set()
            deadline = time.monotonic() + 10
            n = 1
            while time.monotonic() < deadline:
                for i, server in enumerate(replicas):
                    codes.append(_code(server, _round_payload(n)))
                    if _healthy(server) == 503:
                        unwell.add(i)
                n += 1
                time.sleep(0.5)
            cluster.up()
            assert codes and set(codes) == {503}, codes          # never a 2xx for what could not be committed
            assert unwell == {0, 1}
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and any(_healthy(s) != 200 for s in replicas):
                time.sleep(1)
            assert [_healthy(s) for s in replicas] == [200, 200], [s.client.get("/healthz").text for s in replicas]
            after = _round_payload(999)
            delivered = [replicas[1].taken_in(replicas[1].post_bytes(after), timeout_s=60),
                         replicas[0].taken_in(replicas[0].post_bytes(_round_payload(998)), timeout_s=60)]
            # The delivery posted (not an older one under a reused id), taken in, not marked failed: a delivery the
            # ingester gave up on reads "ingested" too, with an error
            assert [d["group_key"] for d in delivered] == [json.loads(_round_payload(n))["groupKey"] for n in (999, 998)]
            assert all(d["ingested"] and not d["failed"] and not d["error"] for d in delivered), delivered
            stored = {a["fingerprint"] for a in replicas[0].client.get("/incidents", params={"limit": 1000}).json()
                      for a in replicas[0].client.get(f"/incidents/{a['id']}").json()["alerts"]}
            wanted = {a["fingerprint"] for a in json.loads(before)["alerts"]} | \
                {a["fingerprint"] for a in json.loads(after)["alerts"]}
            assert wanted <= stored, (wanted - stored, delivered, [s.log.read_text()[-4000:] for s in replicas])
            verify = replicas[0].cli("audit", "verify")
            assert verify.returncode == 0 and "chain intact" in verify.stdout, verify.stdout + verify.stderr
        finally:
            for s in replicas:
                s.stop()
            cluster.stop()
