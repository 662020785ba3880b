"""The whole chain, every part real: Prometheus sees webapp down on app-server-01, its rule fires,
Alertmanager posts to `remediator serve`, which restarts webapp and only calls it fixed when the
alert's own expression (from generatorURL) stops returning the host's series."""
import time

import pytest

from tests.e2e.conftest import Server, free_port, on_host, start_alertmanager, start_prometheus, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chain(tmp_path_factory, lab_fleet, receivers):
    work = tmp_path_factory.mktemp("prometheus")
    server_port = free_port()
    am_url, am = start_alertmanager(work, server_port)
    prom_url, prom = start_prometheus(work, am_url)
    server = Server(work / "serve", receivers, port=server_port, alertmanager_url=am_url, prometheus_url=prom_url)
    yield server
    server.stop()
    stop(prom)
    stop(am)


def test_prometheus_alert_to_verified_fix(chain):
    server = chain
    assert on_host("app-server-01", "systemctl", "is-active", "webapp").stdout.strip() == "active"
    on_host("app-server-01", "systemctl", "stop", "webapp")

    deadline = time.monotonic() + 240
    incident = None
    while time.monotonic() < deadline:
        listed = server.client.get("/incidents").json()
        if listed and listed[0]["state"] in {"resolved", "escalated", "failed", "denied"}:
            incident = server.client.get(f"/incidents/{listed[0]['id']}").json()
            break
        time.sleep(1)
    assert incident is not None, "no incident reached a final state"
    assert incident["state"] == "resolved", incident["reason"]
    assert incident["host"] == "app-server-01"                # found by the `host` label (instance is 127.0.0.1:18081)
    assert on_host("app-server-01", "systemctl", "is-active", "webapp").stdout.strip() == "active"

    evidence = incident["evidence"]["prometheus"]
    assert evidence["expr"] == 'up{job="webapp"} == 0'
    assert evidence["series"] and evidence["series"][0]["labels"]["host"] == "app-server-01"
    checks = [e["data"] for e in incident["timeline"] if e["kind"] == "verify.prometheus"]
    assert checks and checks[0]["cleared"] is True
    assert "Prometheus: up{job=\"webapp\"} == 0 returns no series" in incident["reason"]
