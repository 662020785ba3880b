"""The two-region drill, on the lab's real hosts (app-server-01 in region_east, app-server-02 in region_west; webapp
stopped on both, one ServiceDown each):

1. waves: restart_service runs in one region while the other waits (held back), and runs there only after the first
   verified and its bake time passed;
2. the storm brake: the same alert in both regions brakes it: nothing runs without a person, and the team is told
   once;
3. `remediator pause` stops new claims at once (`incidents show` says why), `resume` lets them go on.
"""
import copy
import json
import re
import time
from datetime import UTC, datetime

import pytest

from tests.chaos.test_kill import TEMPLATE
from tests.e2e.conftest import Server
from tests.lab import HOSTS as LAB
from tests.lab import on_host

pytestmark = pytest.mark.e2e
HOSTS = {h: LAB[h].port for h in ("app-server-01", "app-server-02")}   # the webapp's published port
LAB_HOSTS = list(HOSTS)
BAKE_S = 10   # the assertions measure the gap against it, whatever it is


def _storm(tag: str, hosts=tuple(HOSTS), alertname: str = "ServiceDown") -> bytes:
    """One alert per host (ServiceDown: its webapp stopped first, the runbook reads before it acts)."""
    for host in hosts:
        on_host(host, "systemctl", "stop", "webapp")
    body = copy.deepcopy(TEMPLATE)
    starts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body["alerts"] = [{**TEMPLATE["alerts"][0], "startsAt": starts, "fingerprint": f"{tag}{n:04x}".ljust(16, "0")[:16],
                       "labels": {"alertname": alertname, "instance": f"{host}:{HOSTS[host]}", "service": "webapp",
                                  "severity": "critical", "drill": tag}, "annotations": {"description": tag}}
                      for n, host in enumerate(hosts)]
    body.update(groupLabels={}, commonLabels={}, commonAnnotations={}, groupKey=f"{{}}:{{drill=\"{tag}\"}}")
    return json.dumps(body).encode()


def _post(server: Server, body: bytes) -> list[str]:
    r = server.client.post("/webhook/alertmanager", content=body, headers={"content-type": "application/json"})
    return server.taken_in(r)["incidents"]


def _by_host(server: Server, ids: list[str]) -> dict[str, dict]:
    details = [server.client.get(f"/incidents/{i}").json() for i in ids]
    return {d["host"]: d for d in details}


def test_waves_then_the_brake_then_pause(tmp_path, lab_fleet):
    receivers = lab_fleet
    waves = Server(tmp_path / "serve", receivers, brake_regions="99", wave_window_s="3600", wave_bake_s=str(BAKE_S),
                   hold_s="1", workers="2")
    try:
        ids = _post(waves, _storm("aa"))
        done = {i: waves.wait_state(i, {"resolved"}, timeout_s=240) for i in ids}
        by_host = {d["host"]: d for d in done.values()}
        applies = {h: next(r for r in d["runs"] if r["mode"] == "apply") for h, d in by_host.items()}
        first, second = sorted(applies, key=lambda h: applies[h]["started_at"])
        held = [e for e in by_host[second]["timeline"] if e["kind"] == "incident.held"]
        assert held, f"{second} never waited for the wave: {[e['kind'] for e in by_host[second]['timeline']]}"
        first_closed = datetime.fromisoformat(by_host[first]["closed_at"])
        second_started = datetime.fromisoformat(applies[second]["started_at"])
        assert (second_started - first_closed).total_seconds() >= BAKE_S, (first_closed, second_started)
        for host in HOSTS:
            assert on_host(host, "systemctl", "is-active", "webapp").stdout.strip() == "active"
    finally:
        waves.stop()

    braking = Server(tmp_path / "serve", receivers, brake_regions="2", wave_window_s="0", workers="2")   # the default
    try:
        sent_before = sum(1 for m in receivers.received["hook"] if m.get("event") == "breaker_open")
        ids = _post(braking, _storm("bb"))
        waiting = {i: braking.wait_state(i, {"awaiting_approval"}, timeout_s=180) for i in ids}
        for d in waiting.values():
            assert "storm brake: ServiceDown fires in 2 regions" in d["reason"] and not any(
                r["mode"] == "apply" for r in d["runs"]), d["reason"]
        time.sleep(2)   # the outbox goes out every half second
        told = [m for m in receivers.received["hook"] if m.get("event") == "breaker_open"]
        assert len(told) - sent_before == 1, told                                   # once, not per incident
        for host in HOSTS:
            assert on_host(host, "systemctl", "is-active", "webapp").stdout.strip() != "active"   # nothing ran

        admin = re.search(r"rmd_\S+", braking.cli("approvers", "add", "ada", "--role", "admin").stdout).group(0)
        paused = braking.cli("pause", "--reason", "drill", "--token", admin)
        assert paused.returncode == 0, paused.stderr
        (held,) = _post(braking, _storm("cc", hosts=("app-server-01",), alertname="DiskSpaceLow"))   # a new incident
        time.sleep(5)
        assert braking.client.get(f"/incidents/{held}").json()["state"] == "received"    # not claimed while paused
        show = braking.cli("incidents", "show", held)
        assert "held back: claims are paused (*) by ada" in show.stdout and "drill" in show.stdout, show.stdout
        resumed = braking.cli("resume", "--token", admin)
        assert resumed.returncode == 0, resumed.stderr
        braking.wait_state(held, {"diagnosing", "planned", "checking", "awaiting_approval", "escalated", "resolved"},
                           timeout_s=60)
    finally:
        braking.stop()
