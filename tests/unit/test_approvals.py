"""Approvals on every surface but the browser (tests/e2e/test_approval_page.py does that): who may decide,
two approvers for high risk, expiry, digests, drift, the API, the CLI, the pages and the Slack message."""
import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.cli.main import app as cli
from remediator.engine.decide.policy import PolicyContext
from remediator.engine.model.records import ActionProposal, PolicyDecision, Verdict
from remediator.engine.model.states import IncidentState
from remediator.engine.outbound.notify import Notification, NotifyEvent, notify_incident, slack_payload
from remediator.engine.people import approvals
from remediator.engine.run.preview import build_preview
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Approval, AuditEvent, Incident, OutboxMessage, utcnow
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.unit, pytest.mark.store]
SERVICE = {"Authorization": "Bearer service-token-0123456789ab"}
PAYLOAD = (PROJECT_ROOT / "evals" / "cases" / "disk-space-low" / "alert.json").read_bytes()
PREVIEW = build_preview("clean_logs", json.loads((FIXTURES / "events" / "clean_logs-check.json").read_text()),
                        check=True, hosts=["app-server-01"])


@pytest.fixture
def engine(make_engine):
    return make_engine(tokens=["service-token-0123456789ab"], slack_webhook_url="http://127.0.0.1:9/slack", public_url="http://remediator.example")


@pytest.fixture
def client(engine):
    # a browser sends its page's Origin with every form POST
    with TestClient(create_app(engine, start_engine=False), base_url="http://remediator.example",
                    headers={"Origin": "http://remediator.example"}) as c:
        yield c


@pytest.fixture
def people(engine):
    """name -> bearer header; one person of each role, and a second approver."""
    out = {}
    for name, role in [("alice", "approver"), ("bob", "approver"), ("vera", "viewer"), ("ada", "admin")]:
        out[name] = {"Authorization": f"Bearer {engine.identities.add(name, role)[1]}"}
    return out


def waiting(engine, required: int = 1, payload: bytes = PAYLOAD, sender: str = "alertmanager") -> tuple[str, str]:
    """An incident waiting for approval of the clean_logs dry run in tests/fixtures/events (as the pipeline leaves it)."""
    incident_id = take_in(engine, payload, sender).incidents[0]
    proposal = ActionProposal(entry="clean_logs", params={"paths": ["/var/log/webapp"], "patterns": ["*.log"], "min_age_days": 7},
                              hosts=["app-server-01"], rationale="old logs fill the disk", planner="runbook", offered=["clean_logs"])
    decision = PolicyDecision(verdict=Verdict.APPROVE, reasons=["an operator wants to see log deletions"],
                              rules=["see-deletions"], approvers=required)
    with engine.store.write() as session:
        inc = session.get(Incident, incident_id)
        inc.state, inc.entry = IncidentState.AWAITING_APPROVAL, "clean_logs"
        inc.proposal, inc.decision = proposal, decision
        inc.preview = {**PREVIEW.model_dump(mode="json"), "digest": PREVIEW.digest}
        approval = approvals.request(session, engine.settings, inc, PREVIEW, required=required, risk="safe",
                                     rules=decision.rules, reasons=decision.reasons)
    return incident_id, approval.id


def _state(engine, incident_id):
    with engine.store.read() as s:
        return s.get(Incident, incident_id).state


def test_an_approver_approves_exactly_the_dry_run(engine, client, people):
    incident_id, approval_id = waiting(engine)
    shown = client.get(f"/approvals/{approval_id}", headers=people["vera"]).json()
    assert shown["preview"]["summary"].startswith("clean_logs: app-server-01: would delete 3 files")
    assert shown["reasons"] == "an operator wants to see log deletions" and shown["rollback"]
    assert shown["alertname"] == "DiskSpaceLow" and shown["rationale"] == "old logs fill the disk"
    assert [a["id"] for a in client.get("/approvals", headers=SERVICE).json()] == [approval_id]

    r = client.post(f"/approvals/{approval_id}/approve", json={"digest": shown["digest"], "comment": "ok"},
                    headers=people["alice"])
    assert r.status_code == 200 and r.json() == {"approval": approval_id, "state": "approved", "by": "alice"}
    assert _state(engine, incident_id) == IncidentState.APPROVED
    with engine.store.read() as s:
        vote = s.execute(select(AuditEvent).where(AuditEvent.kind == "approval.vote")).scalar_one()
    assert vote.data["by"] == "alice" and vote.data["digest"] == PREVIEW.digest and vote.data["comment"] == "ok"
    again = client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=people["bob"])
    assert again.status_code == 409 and "nothing is waiting" in again.json()["detail"]


def test_reject_stops_it_and_tells_people(engine, client, people):
    incident_id, approval_id = waiting(engine)
    r = client.post(f"/incidents/{incident_id}/reject", json={"comment": "not during the sale"}, headers=people["bob"])
    assert r.status_code == 200
    with engine.store.read() as s:
        inc = s.get(Incident, incident_id)
        notes = s.execute(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)).scalars().all()
    assert inc.state == IncidentState.REJECTED and inc.reason == "rejected by bob: not during the sale"
    assert [n.event for n in notes] == ["rejected"]


def test_the_engine_never_approves_its_own_request_and_roles_hold(engine, client, people):
    incident_id, approval_id = waiting(engine)
    r = client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=SERVICE)
    assert r.status_code == 403 and "never approves its own requests" in r.json()["detail"]
    r = client.post(f"/incidents/{incident_id}/approve", json={"digest": PREVIEW.digest}, headers=SERVICE)
    assert r.status_code == 403
    r = client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=people["vera"])
    assert r.status_code == 403 and "vera is viewer" in r.json()["detail"]
    assert client.post("/approvers", json={"name": "mallory", "role": "admin"}, headers=people["alice"]).status_code == 403
    assert client.get("/approvers", headers=SERVICE).status_code == 403
    assert _state(engine, incident_id) == IncidentState.AWAITING_APPROVAL       # none of that changed anything

    made = client.post("/approvers", json={"name": "carol", "role": "approver"}, headers=people["ada"])
    assert made.status_code == 201 and made.json()["token"].startswith("rmd_")
    carol = {"Authorization": f"Bearer {made.json()['token']}"}
    assert client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=carol).json()["by"] == "carol"
    assert client.delete("/approvers/carol", headers=people["ada"]).status_code == 200
    engine.identities._cache.clear()
    assert client.get("/approvals", headers=carol).status_code == 401          # revoked
    assert client.post("/approvers", json={"name": "engine", "role": "approver"}, headers=people["ada"]).status_code == 409


def test_high_risk_takes_two_distinct_approvers(engine, client, people):
    incident_id, approval_id = waiting(engine, required=2)
    seen = {"digest": PREVIEW.digest}
    assert client.post(f"/approvals/{approval_id}/approve", json=seen, headers=people["alice"]).json()["state"] == "pending"
    assert _state(engine, incident_id) == IncidentState.AWAITING_APPROVAL
    twice = client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=people["alice"])
    assert twice.status_code == 409 and "another, distinct approver" in twice.json()["detail"]
    assert client.post(f"/approvals/{approval_id}/approve", json=seen, headers=people["bob"]).json()["state"] == "approved"
    assert _state(engine, incident_id) == IncidentState.APPROVED
    detail = client.get(f"/approvals/{approval_id}", headers=SERVICE).json()
    assert detail["decided_by"] == "alice, bob" and [v["approver"] for v in detail["votes"]] == ["alice", "bob"]


def test_policy_asks_two_people_for_high_risk_entries(catalog_copy, tmp_path):
    meta = catalog_copy / "roles" / "rollback_release" / "meta" / "remediator.yml"
    meta.write_text(meta.read_text().replace("risk: approval", "risk: high"))
    engine = new_engine(Settings(data_dir=tmp_path, playbooks_dir=catalog_copy))
    plan = ActionProposal(entry="rollback_release", params={"service": "webapp"}, hosts=["app-server-01"], rationale="r",
                          planner="runbook", offered=["rollback_release"])
    decision, _ = engine.policy.decide(plan, PolicyContext(incident_host="app-server-01", severity="warning",
                                                           labels={"service": "webapp"}))
    assert decision.verdict == Verdict.APPROVE and decision.approvers == 2


def test_expired_and_stale_digests_are_refused(engine, client, people):
    incident_id, approval_id = waiting(engine)
    r = client.post(f"/approvals/{approval_id}/approve", json={"digest": "0" * 64}, headers=people["alice"])
    assert r.status_code == 409 and "digest differs" in r.json()["detail"]
    with engine.store.write() as s:
        s.get(Approval, approval_id).expires_at = utcnow() - timedelta(seconds=1)
    r = client.post(f"/approvals/{approval_id}/approve", json={"digest": PREVIEW.digest}, headers=people["alice"])
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    assert approvals.expire_due(engine.store, engine.lifecycle) == 1
    assert _state(engine, incident_id) == IncidentState.EXPIRED
    assert client.get(f"/approvals/{approval_id}", headers=SERVICE).json()["state"] == "expired"


def test_drift_says_what_changed():
    approved = PREVIEW
    assert approvals.drift(approved, PREVIEW) == []
    other = build_preview("clean_logs", json.loads((FIXTURES / "events" / "clean_logs-check.json").read_text()),
                          check=True, hosts=["app-server-01"])
    h = other.hosts[0]
    tasks = [t.model_copy(update={"diff": t.diff.replace("old-1", "old-9")}) if t.diff else t for t in h.tasks]
    moved = other.model_copy(update={"hosts": [h.model_copy(update={"tasks": tasks})]})
    assert approvals.drift(approved, moved) == ["app-server-01: task 'Delete the old files' would change differently"]
    elsewhere = other.model_copy(update={"hosts": [h.model_copy(update={"host": "app-server-02"})]})
    assert approvals.drift(approved, elsewhere) == ["host app-server-01 is gone", "host app-server-02 appears"]


def test_cli_lists_shows_and_decides(engine, tmp_path):
    runner = CliRunner()
    env = {"REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_TOKENS": "service-token-0123456789ab", "COLUMNS": "200",
           **({"REMEDIATOR_DATABASE_URL": engine.settings.database_url} if engine.settings.database_url else {})}
    added = runner.invoke(cli, ["approvers", "add", "dora", "--role", "approver"], env=env)
    assert added.exit_code == 0, added.output
    token = re.search(r"rmd_\S+", added.output).group(0)
    incident_id, approval_id = waiting(engine)

    listed = runner.invoke(cli, ["approvals", "list"], env=env)
    assert approval_id in listed.output and "clean_logs" in listed.output
    shown = runner.invoke(cli, ["approvals", "show", approval_id], env=env)
    assert "would delete 3 files" in shown.output and "+state: absent" in shown.output
    assert "an operator wants to see log deletions" in shown.output and "roll back" in shown.output

    digest = re.search(r"--digest ([0-9a-f]{64})", shown.output).group(1)   # what `decide:` says to type

    refused = runner.invoke(cli, ["approvals", "approve", approval_id, "--digest", digest],
                            env={**env, "REMEDIATOR_APPROVER_TOKEN": "service-token-0123456789ab"})
    assert refused.exit_code != 0 and "never approves its own requests" in str(refused.exception)
    as_dora = {**env, "REMEDIATOR_APPROVER_TOKEN": token}
    blind = runner.invoke(cli, ["approvals", "approve", approval_id], env=as_dora)   # N10: no approving unseen
    assert blind.exit_code == 2 and "--digest" in blind.output
    stale = runner.invoke(cli, ["approvals", "approve", approval_id, "--digest", "0" * 64], env=as_dora)
    assert stale.exit_code != 0 and "its digest differs" in str(stale.exception)
    ok = runner.invoke(cli, ["approvals", "approve", approval_id, "--digest", digest, "--comment", "fine"], env=as_dora)
    assert ok.exit_code == 0, ok.output
    assert "approved (by dora)" in ok.output
    assert _state(engine, incident_id) == IncidentState.APPROVED


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login_csrf(client) -> str:
    """The login form's own token (and its cookie, which the client keeps)."""
    return re.search(r'name="login_csrf" value="([^"]+)"', client.get("/ui/login").text).group(1)


def _login(client, header) -> None:
    token = header["Authorization"].removeprefix("Bearer ")
    r = client.post("/ui/login", data={"token": token, "next": "/ui/approvals", "login_csrf": login_csrf(client)},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/approvals"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie


def test_pages_need_a_person_and_a_post_with_the_csrf_token(engine, client, people):
    incident_id, approval_id = waiting(engine)
    r = client.get(f"/ui/approvals/{approval_id}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/login?next=/ui/approvals/{approval_id}"
    r = client.post("/ui/login", data={"token": "service-token-0123456789ab", "login_csrf": login_csrf(client)}, follow_redirects=False)
    assert r.status_code == 403 and "service tokens cannot log in" in r.text
    assert client.post("/ui/login", data={"token": "rmd_nope_nope", "login_csrf": login_csrf(client)}).status_code == 401

    _login(client, people["alice"])
    page = client.get(f"/ui/approvals/{approval_id}")
    assert page.status_code == 200
    assert "would delete 3 files" in page.text and '<span class="del">-state: file</span>' in page.text
    assert '<span class="add">+state: absent</span>' in page.text and 'id="approve"' in page.text
    csrf = _csrf(page.text)

    assert client.post(f"/ui/approvals/{approval_id}/approve", data={"digest": PREVIEW.digest}).status_code == 403
    forged = client.post(f"/ui/approvals/{approval_id}/approve", data={"csrf": csrf, "digest": PREVIEW.digest},
                         headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "evil.example" in forged.text
    assert _state(engine, incident_id) == IncidentState.AWAITING_APPROVAL

    r = client.post(f"/ui/approvals/{approval_id}/approve", data={"csrf": csrf, "digest": PREVIEW.digest, "comment": "go"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/incidents/{incident_id}"
    assert _state(engine, incident_id) == IncidentState.APPROVED
    incident = client.get(f"/ui/incidents/{incident_id}").text
    assert 'id="incident-state">approved<' in incident and "approval.vote" in incident


def test_the_pages_list_and_search_incidents_and_say_why_an_escalated_one_has_no_dry_run(engine, client, people):
    """An operator's first day: /ui/incidents was a 404, and an escalated incident said "No dry run yet"."""
    waiting_id, _ = waiting(engine)
    (unknown,) = take_in(engine, (FIXTURES / "payloads" / "unknown-host-two-ports.json").read_bytes()).incidents
    with engine.store.read() as s:
        assert s.get(Incident, unknown).state == IncidentState.ESCALATED
    assert client.get("/ui/incidents", follow_redirects=False).status_code == 303      # a person's page
    _login(client, people["vera"])                                                      # a viewer may look
    listed = client.get("/ui/incidents").text
    assert f'href="/ui/incidents/{waiting_id}"' in listed and f'href="/ui/incidents/{unknown}"' in listed
    assert 'href="/ui/incidents">Incidents</a>' in listed
    by_state = client.get("/ui/incidents", params={"state": "escalated"}).text
    assert f"/ui/incidents/{unknown}" in by_state and f"/ui/incidents/{waiting_id}" not in by_state
    by_text = client.get("/ui/incidents", params={"q": "CLEAN_LOGS"}).text                # any case, the action too
    assert f"/ui/incidents/{waiting_id}" in by_text and f"/ui/incidents/{unknown}" not in by_text
    assert "No incident matches" in client.get("/ui/incidents", params={"q": "100%_<script>"}).text
    assert "<script>" not in client.get("/ui/incidents", params={"q": "<script>"}).text   # escaped, as every field
    page = client.get(f"/ui/incidents/{unknown}").text
    assert 'id="no-dry-run"' in page and "escalated before any action was chosen" in page and "No dry run yet" not in page
    assert "Nothing was read for this incident" in page
    with engine.store.write() as s:      # a crash loop's evidence, as the lab recorded it: read, not raw JSON
        s.get(Incident, unknown).evidence = json.loads(
            (PROJECT_ROOT / "evals" / "cases" / "lab-crash-loop-bad-config" / "evidence.json").read_text())
    page = client.get(f"/ui/incidents/{unknown}").text
    assert '<h3 class="evidence">service_status <code>unit=webapp' in page and "<dt>active_state</dt><dd>failed</dd>" in page
    assert re.search(r"\[×\d+, the last at 20", page)
    api = client.get("/incidents", params={"q": "clean_logs"}, headers=SERVICE).json()
    assert [i["id"] for i in api] == [waiting_id]


def test_a_viewer_sees_the_page_without_buttons(engine, client, people):
    _, approval_id = waiting(engine)
    _login(client, people["vera"])
    page = client.get(f"/ui/approvals/{approval_id}").text
    assert "would delete 3 files" in page and 'id="approve"' not in page and "may look, not decide" in page


def test_slack_links_to_the_page_and_never_approves(engine):
    incident_id, approval_id = waiting(engine, required=2)
    with engine.store.write() as s:
        approval = s.get(Approval, approval_id)
        notify_incident(s, engine.settings, s.get(Incident, incident_id), NotifyEvent.AWAITING_APPROVAL, "policy asks",
                        approval=approval)
        note = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "slack")).scalars().all()[-1]
    body = slack_payload(Notification.model_validate(note.payload))
    text = json.dumps(body)
    assert f"http://remediator.example/ui/approvals/{approval_id}" in text
    assert "*Risk*" in text and "*Expires*" in text and "two distinct approvers" in text
    assert "would delete 3 files" in text
    assert not any(b["type"] == "actions" for b in body["blocks"])     # a link only: no button that decides
    assert note.event == NotifyEvent.AWAITING_APPROVAL


def test_a_person_decides_from_another_terminal_with_url_and_their_token(make_engine, tmp_path):
    """`remediator --url URL approvals …` asks a running serve over HTTP with the person's token (before: only the CLI
    on the server, opening its store); a wrong token or a stale digest is one line, as locally."""
    from remediator.engine.lab.harness import ServeProcess, free_port
    data = tmp_path / "server"
    engine = make_engine(data_dir=data, tokens=["service-token-0123456789ab"])
    incident_id, approval_id = waiting(engine)
    _, token = engine.identities.add("alice", "approver")
    port = free_port()
    serve = ServeProcess({"REMEDIATOR_DATA_DIR": str(data), "REMEDIATOR_PORT": str(port), "REMEDIATOR_PLANNER": "runbook",
                          "REMEDIATOR_TOKENS": "service-token-0123456789ab",
                          **({"REMEDIATOR_DATABASE_URL": engine.settings.database_url} if engine.settings.database_url else {})},
                         port, tmp_path / "serve.log")
    try:
        runner = CliRunner()
        elsewhere = {"REMEDIATOR_URL": f"http://127.0.0.1:{port}", "REMEDIATOR_APPROVER_TOKEN": token,
                     "REMEDIATOR_DATA_DIR": str(tmp_path / "laptop")}       # no store of the server's here
        listed = runner.invoke(cli, ["approvals", "list", "--json"], env=elsewhere)
        assert listed.exit_code == 0 and approval_id in listed.output, listed.output
        shown = runner.invoke(cli, ["approvals", "show", approval_id], env=elsewhere)
        assert shown.exit_code == 0 and f"digest  {PREVIEW.digest}" in shown.output and "would delete 3 files" in shown.output
        wrong = runner.invoke(cli, ["approvals", "list"], env={**elsewhere, "REMEDIATOR_APPROVER_TOKEN": "rmd_nope_nope"})
        assert wrong.exit_code != 0 and "answered 401" in str(wrong.exception) and "REMEDIATOR_APPROVER_TOKEN" in str(wrong.exception)
        stale = runner.invoke(cli, ["approvals", "approve", approval_id, "--digest", "0" * 64], env=elsewhere)
        assert stale.exit_code != 0 and "answered 409" in str(stale.exception)
        ok = runner.invoke(cli, ["approvals", "approve", approval_id, "--digest", PREVIEW.digest, "--comment", "ok"],
                           env=elsewhere)
        assert ok.exit_code == 0 and "approved (by alice" in ok.output, ok.output
        incidents = runner.invoke(cli, ["incidents", "list", "--search", "clean_logs", "--json"], env=elsewhere)
        assert incidents.exit_code == 0 and incident_id in incidents.output
        assert not (tmp_path / "laptop").exists()                                   # nothing opened a store here
    finally:
        serve.stop(10)
    with engine.store.read() as s:
        votes = s.execute(select(AuditEvent).where(AuditEvent.kind == "approval.vote")).scalars().all()
    assert [(v.data["by"], v.data["comment"]) for v in votes] == [("alice", "ok")]


def test_once_an_admin_exists_only_an_admin_adds_or_removes_people_from_the_command_line(engine, tmp_path):
    """An operator's first day: `approvers add --role admin` asked for no identity. The first people need none (there
    is nobody to ask); after an admin exists, the CLI asks for an admin's token, and the audit names them."""
    runner = CliRunner()
    env = {"REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_TOKENS": "service-token-0123456789ab",
           **({"REMEDIATOR_DATABASE_URL": engine.settings.database_url} if engine.settings.database_url else {})}
    first = runner.invoke(cli, ["approvers", "add", "ada", "--role", "admin"], env=env)
    assert first.exit_code == 0, first.output
    ada = re.search(r"rmd_\S+", first.output).group(0)
    refused = runner.invoke(cli, ["approvers", "add", "mallory", "--role", "admin"], env=env)
    assert refused.exit_code != 0 and "an admin exists (ada): adding a person takes an admin's token" in str(refused.exception)
    bob = runner.invoke(cli, ["approvers", "add", "bob", "--token", ada], env=env)
    assert bob.exit_code == 0, bob.output
    bobs = re.search(r"rmd_\S+", bob.output).group(0)
    not_admin = runner.invoke(cli, ["approvers", "remove", "ada"], env={**env, "REMEDIATOR_APPROVER_TOKEN": bobs})
    assert not_admin.exit_code != 0 and "admin" in str(not_admin.exception)
    with engine.store.read() as s:
        added = [e.data for e in s.execute(select(AuditEvent).where(AuditEvent.kind == "approver.added")).scalars()]
    assert [(a["name"], a["by"]) for a in added] == [("ada", "the command line (no admin yet)"),
                                                     ("bob", "ada (command line)")]
