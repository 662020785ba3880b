"""A real Alertmanager posts to `remediator serve`: `amtool alert add` to a fixed lab host.

The receiver has `max_alerts: 1`, so Alertmanager sends one of the group's two alerts and says
`truncatedAlerts: 1`; remediator fetches the other from Alertmanager's API and fixes both hosts."""
import subprocess
import time

import pytest

from tests.e2e.conftest import Server, free_port, on_host, start_alertmanager, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alertmanager_and_server(tmp_path_factory, lab_fleet, receivers):
    work = tmp_path_factory.mktemp("alertmanager")
    server_port = free_port()
    am_url, am = start_alertmanager(work, server_port, max_alerts=1)
    server = Server(work / "serve", receivers, port=server_port, alertmanager_url=am_url)
    yield am_url, server
    server.stop()
    stop(am)


def test_amtool_alert_is_fixed_and_a_truncated_group_is_fetched_whole(alertmanager_and_server):
    am_url, server = alertmanager_and_server
    on_host("app-server-01", "systemctl", "stop", "webapp")
    on_host("api-server-01", "systemctl", "stop", "api-gateway")
    for labels in (["instance=app-server-01:8080", "service=webapp"], ["instance=api-server-01:8080", "service=api-gateway"]):
        add = subprocess.run(["amtool", f"--alertmanager.url={am_url}", "alert", "add", "alertname=ServiceDown",
                              "severity=critical", *labels, "--annotation=description=down (amtool)"],
                             capture_output=True, text=True)
        assert add.returncode == 0, add.stderr

    deadline = time.monotonic() + 240
    incidents: list[dict] = []
    while time.monotonic() < deadline:
        incidents = server.client.get("/incidents").json()
        if len(incidents) == 2 and all(i["state"] in {"resolved", "escalated", "failed", "denied"} for i in incidents):
            break
        time.sleep(1)
    assert sorted((i["host"], i["state"]) for i in incidents) == [("api-server-01", "resolved"), ("app-server-01", "resolved")], \
        [(i["host"], i["state"], i["reason"]) for i in incidents]
    assert on_host("app-server-01", "systemctl", "is-active", "webapp").stdout.strip() == "active"
    assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() == "active"

    details = [server.client.get(f"/incidents/{i['id']}").json() for i in incidents]
    kinds = [e["kind"] for d in details for e in d["timeline"]]
    assert "delivery.truncated" in kinds
    refetched = [e["data"]["outcome"] for d in details for e in d["timeline"] if e["kind"] == "delivery.refetched"]
    assert any("fetched 2 alerts from the Alertmanager API, 1 of them new" in o for o in refetched), refetched
    assert all(d["alerts"][0]["annotations"]["description"] == "down (amtool)" for d in details)


def test_a_servicedown_for_a_unit_that_runs_restarts_nothing(alertmanager_and_server):
    """Diagnose first (issue 15): the probe says down, the unit runs and answers; remediator reads it and escalates."""
    am_url, server = alertmanager_and_server
    assert on_host("app-server-01", "systemctl", "is-active", "webapp").stdout.strip() == "active"
    pid = on_host("app-server-01", "systemctl", "show", "--property=MainPID", "--value", "webapp").stdout.strip()
    before = {i["id"] for i in server.client.get("/incidents").json()}
    add = subprocess.run(["amtool", f"--alertmanager.url={am_url}", "alert", "add", "alertname=ServiceDown",
                          "severity=critical", "instance=app-server-01:8080", "service=webapp", "probe=blackbox",
                          "--annotation=description=the probe cannot reach it"], capture_output=True, text=True)
    assert add.returncode == 0, add.stderr
    deadline = time.monotonic() + 240
    new: list[dict] = []
    while time.monotonic() < deadline:
        new = [i for i in server.client.get("/incidents").json() if i["id"] not in before]
        if new and all(i["state"] in {"resolved", "escalated", "failed", "denied"} for i in new):
            break
        time.sleep(1)
    assert len(new) == 1 and new[0]["state"] == "escalated", new
    d = server.client.get(f"/incidents/{new[0]['id']}").json()
    assert "the unit runs and answers" in d["reason"] and "active_state=active" in d["reason"]
    assert [r["mode"] for r in d["runs"]] == ["diagnose"]                     # read, nothing checked or run
    assert on_host("app-server-01", "systemctl", "show", "--property=MainPID", "--value", "webapp").stdout.strip() == pid
