"""End to end: `remediator serve` as a process, real HTTP, real lab hosts, Slack/PagerDuty stand-ins.

The tests share one server and run in file order (a resend needs the first delivery)."""
import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PAYLOADS, SAMPLES, on_host

pytestmark = pytest.mark.e2e
GROUPED = SAMPLES / "alertmanager-firing-grouped.json"


def _runs(server, incident_id: str) -> list[dict]:
    return server.client.get(f"/incidents/{incident_id}").json()["runs"]


def test_health_and_auth(server):
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    anonymous = httpx.post(f"{server.url}/webhook/alertmanager", content=GROUPED.read_bytes())
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    wrong = server.post(GROUPED, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and "not one of the configured tokens" in wrong.json()["detail"]
    assert httpx.get(f"{server.url}/incidents").status_code == 401
    # The webhook lives at one path; posting to / says where.
    assert "/webhook/alertmanager" in httpx.post(f"{server.url}/", content=b"{}").json()["detail"]


def test_bad_payload_is_422_naming_the_field(server):
    r = server.post(PAYLOADS / "invalid-fingerprint.json")
    assert r.status_code == 422
    assert "alerts.0.fingerprint" in r.json()["detail"]
    r = server.client.post("/webhook/alertmanager", content=b'{"version": "4"', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    r = server.client.post("/webhook/alertmanager", content=b"x" * (1_048_576 + 10))
    assert r.status_code == 413
    assert server.client.get("/incidents").json() == []    # nothing of it was stored


def test_sample_alert_restarts_the_stopped_service(server, receivers):
    """The README's first fix: api-gateway is down on api-server-01; the grouped sample arrives."""
    on_host("api-server-01", "systemctl", "stop", "api-gateway")
    assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() != "active"

    r = server.post(GROUPED)
    assert r.status_code == 200, r.text
    taken = server.taken_in(r)
    assert taken["new"] == 3 and len(taken["incidents"]) == 3

    incidents = {d["host"]: d for d in (server.wait_state(i, {"resolved", "escalated", "failed", "denied"})
                                        for i in taken["incidents"])}
    fixed = incidents["api-server-01"]
    assert fixed["state"] == "resolved", fixed["reason"]
    assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() == "active"
    assert fixed["proposal"]["entry"] == "restart_service" and fixed["proposal"]["params"]["unit"] == "api-gateway"
    assert fixed["decision"]["verdict"] == "allow"
    assert "would restart api-gateway.service" in fixed["preview"]["summary"]
    assert fixed["evidence"]["service_status"]["report"]["active_state"] in {"inactive", "failed"}
    modes = [run["mode"] for run in fixed["runs"]]
    assert modes.index("check") < modes.index("apply") < modes.index("verify")
    kinds = [e["kind"] for e in fixed["timeline"]]
    for kind in ("incident.opened", "run.diagnose", "incident.planned", "check.preview", "run.apply",
                 "run.verify", "incident.resolved"):
        assert kind in kinds, kinds

    # The two hosts that are not in the inventory are escalated, never guessed.
    escalated = [d for d in (server.client.get(f"/incidents/{i}").json() for i in taken["incidents"])
                 if d["host"] is None]
    assert len(escalated) == 2 and sorted(taken["escalated"]) == sorted(d["id"] for d in escalated)
    assert all(d["state"] == "escalated" and "no inventory host matches" in d["reason"] for d in escalated)

    # Slack heard both outcomes; PagerDuty resolved the fixed incident and was paged for the others.
    receivers.wait_for("slack", lambda b: "Fixed" in b["text"] and "api-server-01" in b["text"])
    receivers.wait_for("slack", lambda b: "Escalated" in b["text"])
    resolve = receivers.wait_for("pagerduty", lambda b: b["dedup_key"] == fixed["id"])
    assert resolve["event_action"] == "resolve"
    # the delivery's two hostless escalations are paged once, as a digest (not once each)
    digest_key = f"delivery:{taken['id']}:escalated"
    trigger = receivers.wait_for("pagerduty", lambda b: b["dedup_key"] == digest_key)
    assert trigger["event_action"] == "trigger" and trigger["payload"]["severity"] == "critical"
    assert "2 alerts" in trigger["payload"]["summary"]
    assert not [b for b in receivers.received["pagerduty"] if b["dedup_key"] in {d["id"] for d in escalated}]
    hook = receivers.wait_for("hook", lambda b: b["incident_id"] == fixed["id"])
    assert hook["event"] == "fixed"


def test_resend_is_not_a_second_run(server):
    before = {i["id"]: len(_runs(server, i["id"])) for i in server.client.get("/incidents").json()}
    r = server.post(GROUPED)
    assert r.status_code == 200
    taken = server.taken_in(r)
    assert taken["new"] == 0 and taken["duplicates"] == 3
    time.sleep(3)   # give a (wrongly) woken worker time to start something
    after = {i["id"]: len(_runs(server, i["id"])) for i in server.client.get("/incidents").json()}
    assert after == before


def test_hostile_label_never_runs(server, receivers):
    r = server.post(PAYLOADS / "hostile-service-label.json")
    assert r.status_code == 200
    (incident_id,) = server.taken_in(r)["incidents"]
    d = server.wait_state(incident_id, {"denied", "escalated", "failed", "resolved"})
    # The runbook reads the unit first and may not: the inventory's allow-list refuses it there, or policy does.
    assert d["state"] in {"escalated", "denied"}
    assert "is not on app-server-01's remediator_services" in d["reason"]
    # Not even read: the diagnostic is bounded by the same list (a value that does reach Ansible is marked unsafe,
    # never templated: tests/integration/test_runner.py), and nothing ran.
    assert not any(run["mode"] in ("diagnose", "check", "apply") for run in d["runs"])
    assert "not read:" in json.dumps(d["evidence"])
    assert not Path("/tmp/remediator-e2e-pwned").exists()
    assert on_host("app-server-01", "test", "-e", "/tmp/remediator-e2e-pwned").returncode == 1
    receivers.wait_for("slack", lambda b: incident_id in json.dumps(b))
    assert not any("<!channel>" in json.dumps(b) for b in receivers.received["slack"])


def test_teams_and_tickets_hear_an_escalation_through_their_outage(server, receivers):
    """Teams and both ticket channels are down for a moment: the escalation waits in the outbox and arrives once
    each, one ticket for the incident."""
    for name in ("teams", "jira", "ticket"):
        receivers.fail_next[name] = 3
    r = server.post(PAYLOADS / "no-runbook-app-server-01.json")
    (incident_id,) = server.taken_in(r)["incidents"]
    assert server.wait_state(incident_id, {"escalated", "denied", "failed", "resolved"})["state"] == "escalated"
    card = receivers.wait_for("teams", lambda b: incident_id in json.dumps(b))["attachments"][0]["content"]
    assert any(a["url"].endswith(f"/ui/incidents/{incident_id}") for a in card["actions"])
    ticket = receivers.wait_for("ticket", lambda b: b["external_id"] == incident_id)
    assert ticket["action"] == "open" and ticket["event"] == "escalated"
    deadline = time.monotonic() + 30
    while not (issues := [i for i in receivers.jira.issues.values() if f"remediator-{incident_id}" in i["fields"]["labels"]]):
        assert time.monotonic() < deadline, receivers.jira.issues
        time.sleep(0.2)
    assert len(issues) == 1 and "CertificateExpiringSoon" in issues[0]["fields"]["summary"]
    assert all(receivers.fail_next[n] == 0 for n in ("teams", "jira", "ticket"))   # each was down, then retried
    assert len(receivers.desk.tickets[incident_id]) == 1
    assert len([b for b in receivers.received["teams"] if incident_id in json.dumps(b)]) == 1


def test_approval_runs_exactly_the_previewed_rollback(server, receivers):
    r = server.post(PAYLOADS / "bad-release-app-server-01.json")
    (incident_id,) = server.taken_in(r)["incidents"]
    d = server.wait_state(incident_id, {"awaiting_approval", "denied", "escalated", "failed"})
    assert d["state"] == "awaiting_approval", d["reason"]
    assert "1.4.2 to 1.4.1" in d["preview"]["summary"]
    assert on_host("app-server-01", "readlink", "/opt/webapp/current").stdout.strip().endswith("1.4.2")
    receivers.wait_for("slack", lambda b: "Needs approval" in b["text"] and incident_id in json.dumps(b))
    (approval,) = d["approvals"]

    added = server.cli("approvers", "add", "alice", "--role", "approver")
    alice = {"Authorization": "Bearer " + re.search(r"rmd_\S+", added.stdout).group(0)}
    wrong = server.client.post(f"/incidents/{incident_id}/approve", json={"digest": "0" * 64}, headers=alice)
    assert wrong.status_code == 409 and "digest" in wrong.json()["detail"]
    own = server.client.post(f"/incidents/{incident_id}/approve", json={"digest": approval["preview_digest"]})
    assert own.status_code == 403                               # the service token: the engine never approves itself
    ok = server.client.post(f"/incidents/{incident_id}/approve", json={"digest": approval["preview_digest"]}, headers=alice)
    assert ok.status_code == 200, ok.text

    d = server.wait_state(incident_id, {"resolved", "escalated", "failed", "denied"})
    assert d["state"] == "resolved", d["reason"]
    assert on_host("app-server-01", "readlink", "/opt/webapp/current").stdout.strip().endswith("1.4.1")
    assert [run["mode"] for run in d["runs"]].count("check") == 2    # checked again before the real run
    assert d["approvals"][0]["decided_by"] == "alice"


def test_resolved_alert_closes_a_waiting_incident(server, receivers):
    r = server.post(PAYLOADS / "bad-release-api-server-01.json")
    (incident_id,) = server.taken_in(r)["incidents"]
    assert server.wait_state(incident_id, {"awaiting_approval", "denied", "escalated"})["state"] == "awaiting_approval"
    r = server.post(PAYLOADS / "bad-release-api-server-01-resolved.json")
    assert r.status_code == 200 and server.taken_in(r)["incidents"] == [incident_id]
    d = server.client.get(f"/incidents/{incident_id}").json()
    assert d["state"] == "resolved" and not d["firing"]
    assert "nothing was changed" in d["reason"]
    assert d["approvals"][0]["state"] == "canceled"
    assert not any(run["mode"] == "apply" for run in d["runs"])
    bob = "Bearer " + re.search(r"rmd_\S+", server.cli("approvers", "add", "bob").stdout).group(0)
    late = server.client.post(f"/incidents/{incident_id}/approve", json={"digest": "0" * 64}, headers={"Authorization": bob})
    assert late.status_code == 409 and "not awaiting approval" in late.json()["detail"]
    receivers.wait_for("slack", lambda b: "Resolved on its own" in b["text"] and incident_id in json.dumps(b))


def test_cli_and_metrics_tell_the_same_story(server):
    verify = server.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "chain intact" in verify.stdout
    listed = json.loads(server.cli("incidents", "list", "--json").stdout)
    assert {i["id"] for i in listed} == {i["id"] for i in server.client.get("/incidents").json()}
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'remediator_incidents{state="resolved"} 3.0' in metrics
    assert 'remediator_runs_total{entry="restart_service",mode="apply",outcome="successful"} 1.0' in metrics
    assert 'remediator_alerts_received_total{outcome="duplicate"} 3.0' in metrics
    assert 'remediator_outbox_pending' in metrics
