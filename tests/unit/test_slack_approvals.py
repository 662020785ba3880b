"""Deciding from Slack (remediator/engine/people/slack.py): an approval request's Approve / Reject buttons, clicked in a
stand-in Slack that signs its callbacks as Slack documents (tests/standins.py). A decision counts only from a person
here, on the dry run the message showed, under every rule the page applies; forged, stale, replayed, self-voted and
drifted clicks are refused, and the message says so where Slack asks (response_url)."""
import json
import re
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remediator.api.app import create_app
from remediator.engine.model.states import ApprovalState, IncidentState, NotifyEvent
from remediator.engine.outbound.channels import BY_NAME
from remediator.engine.outbound.notify import Notification, notify_incident
from remediator.engine.store.tables import Approval, ApprovalVote, Incident, OutboxMessage
from tests.standins import Receivers, slack_click
from tests.unit.test_approvals import PREVIEW, waiting

pytestmark = [pytest.mark.unit, pytest.mark.store]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"          # Slack's signing secrets are 32 hex-ish characters


@pytest.fixture
def receivers():
    with Receivers() as r:
        yield r


@pytest.fixture
def engine(make_engine, receivers):
    return make_engine(tokens=["service-token-0123456789ab"], public_url="http://remediator.example",
                       slack_webhook_url=f"{receivers.url}/slack/T0001/B0001/hook", slack_signing_secret=SECRET,
                       slack_response_url_prefix=f"{receivers.url}/slack/")


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine, start_engine=False), base_url="http://remediator.example") as c:
        yield c


@pytest.fixture
def people(engine):
    for name, role, user in [("alice", "approver", "U0ALICE"), ("bob", "approver", "U0BOB"),
                             ("vera", "viewer", "U0VERA"), ("carol", "approver", "U0CAROL")]:
        engine.identities.add(name, role, slack_user=user)


def _request_message(engine, receivers, incident_id, approval_id) -> dict:
    """The approval request as the Slack channel delivers it to the stand-in."""
    with engine.store.write() as s:
        notify_incident(s, engine.settings, s.get(Incident, incident_id), NotifyEvent.AWAITING_APPROVAL, "policy asks",
                        approval=s.get(Approval, approval_id))
        row = s.execute(select(OutboxMessage).where(OutboxMessage.channel == "slack")).scalars().all()[-1]
        note = Notification.model_validate(row.payload)
    BY_NAME["slack"].deliver(lambda method, url, **kw: httpx.request(method, url, **kw).raise_for_status(),
                             engine.settings, note, row.id)
    return receivers.received["slack"][-1]


def _click(client, receivers, user, action, approval_id, digest, message=None, timestamp=None, secret=SECRET):
    value = json.dumps({"approval": approval_id, "digest": digest})
    body, headers = slack_click(secret, user=user, action=action, value=value, timestamp=timestamp, message=message,
                                response_url=f"{receivers.url}/slack/actions/T0001/1/{len(receivers.received['slack'])}")
    return client.post("/slack/interactions", content=body, headers=headers), body, headers


def _votes(engine, approval_id):
    with engine.store.read() as s:
        return [(v.approver, v.decision) for v in s.execute(select(ApprovalVote).where(
            ApprovalVote.approval_id == approval_id)).scalars()]


def _said(receivers) -> str:
    return json.dumps(receivers.received["slack"][-1])


def test_two_people_approve_from_slack_and_every_bad_click_is_refused(engine, client, receivers, people):
    incident_id, approval_id = waiting(engine, required=2)
    message = _request_message(engine, receivers, incident_id, approval_id)
    (buttons,) = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in buttons["elements"]] == ["approve", "reject"]
    assert json.loads(buttons["elements"][0]["value"]) == {"approval": approval_id, "digest": PREVIEW.digest}

    forged, _, _ = _click(client, receivers, "U0ALICE", "approve", approval_id, PREVIEW.digest, secret="not-the-secret")
    assert forged.status_code == 401 and "X-Slack-Signature does not match" in forged.json()["detail"]
    stale, _, _ = _click(client, receivers, "U0ALICE", "approve", approval_id, PREVIEW.digest,
                         timestamp=int(time.time()) - 600)
    # 600 s, or a second or two more when the machine is slow between the click and its check (601 seen in CI)
    assert stale.status_code == 401 and re.search(r"X-Slack-Request-Timestamp is 60\d s away", stale.json()["detail"])
    stranger, _, _ = _click(client, receivers, "U0NOBODY", "approve", approval_id, PREVIEW.digest)
    assert stranger.status_code == 200 and "approvers add NAME --slack U0NOBODY" in _said(receivers)
    viewer, _, _ = _click(client, receivers, "U0VERA", "approve", approval_id, PREVIEW.digest)
    assert viewer.status_code == 200 and "vera's click was refused" in _said(receivers)
    assert _votes(engine, approval_id) == []

    first, body, headers = _click(client, receivers, "U0ALICE", "approve", approval_id, PREVIEW.digest,
                                  message=message)
    assert first.status_code == 200 and _votes(engine, approval_id) == [("alice", "approve")]
    updated = receivers.received["slack"][-1]
    assert updated["replace_original"] is True and "alice approved from Slack" in json.dumps(updated)
    assert any(b["type"] == "actions" for b in updated["blocks"])         # still waiting: the buttons stay
    replayed = client.post("/slack/interactions", content=body, headers=headers)
    assert replayed.status_code == 401 and "already received (a replay)" in replayed.json()["detail"]
    again, _, _ = _click(client, receivers, "U0ALICE", "approve", approval_id, PREVIEW.digest)
    assert "alice has already decided" in _said(receivers)
    drifted, _, _ = _click(client, receivers, "U0BOB", "approve", approval_id, "0" * 64)
    said = receivers.received["slack"][-1]
    assert "its digest differs" in json.dumps(said) and said["replace_original"] is False
    assert any(b["type"] == "actions" for b in said["blocks"])             # the dry run waiting now, to decide on
    assert _votes(engine, approval_id) == [("alice", "approve")]

    done, _, _ = _click(client, receivers, "U0BOB", "approve", approval_id, PREVIEW.digest, message=message)
    assert done.status_code == 200 and _votes(engine, approval_id) == [("alice", "approve"), ("bob", "approve")]
    final = receivers.received["slack"][-1]
    assert "Approved by alice, bob from Slack" in json.dumps(final)
    assert not any(b["type"] == "actions" for b in final["blocks"])        # decided: no button left
    with engine.store.read() as s:
        assert s.get(Approval, approval_id).state == ApprovalState.APPROVED
        assert s.get(Incident, incident_id).state == IncidentState.APPROVED


def test_a_rejection_from_slack_and_no_vote_on_one_s_own_alert(engine, client, receivers, people):
    incident_id, approval_id = waiting(engine, sender="carol")               # carol's own relay posted this alert
    _click(client, receivers, "U0CAROL", "approve", approval_id, PREVIEW.digest)
    assert "carol posted the alert" in _said(receivers) and _votes(engine, approval_id) == []
    _click(client, receivers, "U0BOB", "reject", approval_id, PREVIEW.digest)
    assert "Rejected by bob from Slack; nothing runs" in _said(receivers)
    with engine.store.read() as s:
        assert s.get(Incident, incident_id).state == IncidentState.REJECTED


def test_slack_decisions_are_off_without_a_signing_secret_and_never_call_a_foreign_url(make_engine, receivers, tmp_path):
    off = make_engine(data_dir=tmp_path / "off")
    with TestClient(create_app(off, start_engine=False)) as c:
        r = c.post("/slack/interactions", content=b"payload=%7B%7D")
        assert r.status_code == 404 and "set slack_signing_secret" in r.json()["detail"]
    on = make_engine(data_dir=tmp_path / "on", slack_signing_secret=SECRET, slack_response_url_prefix="https://hooks.slack.com/")
    on.identities.add("alice", "approver", slack_user="U0ALICE")
    incident_id, approval_id = waiting(on)
    with TestClient(create_app(on, start_engine=False)) as c:
        r, _, _ = _click(c, receivers, "U0ALICE", "approve", approval_id, PREVIEW.digest)   # response_url on loopback
    assert r.status_code == 200 and receivers.received["slack"] == []     # decided, but that URL is not called
    with on.store.read() as s:
        assert s.get(Incident, incident_id).state == IncidentState.APPROVED


def test_a_slack_user_is_one_person_and_looks_like_a_member_id(engine, people):
    from remediator.engine.errors import ConflictError
    with pytest.raises(ConflictError, match="the member ID in their Slack profile"):
        engine.identities.add("dave", "approver", slack_user="@dave")
    with pytest.raises(ConflictError, match="Slack user U0ALICE is alice's already"):
        engine.identities.add("dave", "approver", slack_user="U0ALICE")
    assert engine.identities.by_slack("U0BOB").name == "bob"
    engine.identities.remove("bob")
    assert engine.identities.by_slack("U0BOB") is None                      # a revoked person's clicks count no more
