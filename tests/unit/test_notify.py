"""Notifications: payload shapes the real services accept, escaping, and the outbox's retries."""
import json
import threading

import pytest
from sqlalchemy import select, update

from remediator.engine.outbound.notify import (
    Notification,
    Notifier,
    NotifyEvent,
    enqueue,
    pagerduty_payload,
    slack_payload,
    teams_payload,
)
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store
from remediator.engine.store.tables import OutboxMessage, utcnow
from tests.standins import JIRA_TOKEN, JIRA_USER, Receivers, _pagerduty, _slack, _teams

pytestmark = [pytest.mark.unit, pytest.mark.store]
KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def _note(event=NotifyEvent.ESCALATED, text="no runbook matches", **kw) -> Notification:
    base = dict(event=event, incident_id="20261124-170000-abcdef", alertname="ServiceDown", host="app-server-01",
                severity="critical", state="escalated", text=text, entry="restart_service",
                preview="restart_service: app-server-01: would restart webapp.service.",
                url="http://127.0.0.1:8080/incidents/20261124-170000-abcdef")
    return Notification(**{**base, **kw})


@pytest.mark.parametrize("event", list(NotifyEvent))
def test_every_event_makes_a_valid_slack_message(event):
    assert _slack(slack_payload(_note(event))) == (200, "ok")


def test_slack_text_cannot_mention_or_link():
    body = slack_payload(_note(text="<!channel> see <http://evil.example|here> & more"))
    flat = str(body)
    assert "<!channel>" not in flat and "<http://evil" not in flat
    assert "&lt;!channel&gt;" in body["text"]


def test_pagerduty_trigger_and_resolve_share_the_incident_as_dedup_key():
    trigger = pagerduty_payload(_note(NotifyEvent.ESCALATED), KEY)
    resolve = pagerduty_payload(_note(NotifyEvent.FIXED), KEY)
    assert _pagerduty(trigger)[0] == 202 and _pagerduty(resolve)[0] == 202
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "20261124-170000-abcdef"
    assert trigger["payload"]["severity"] == "critical"
    long = pagerduty_payload(_note(text="x" * 5000), KEY)
    assert _pagerduty(long)[0] == 202


@pytest.fixture
def receivers():
    r = Receivers()
    yield r
    r.close()


@pytest.fixture
def outbox(tmp_path, receivers, database_url):
    store = Store(database_url or f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    settings = Settings(data_dir=tmp_path, slack_webhook_url=f"{receivers.url}/slack",
                        pagerduty_url=f"{receivers.url}/pagerduty", pagerduty_routing_key=KEY,
                        webhook_url=f"{receivers.url}/hook", notify_max_attempts=3)
    return store, settings, Notifier(store, settings)


def _rows(store):
    with store.read() as s:
        return {r.channel: r for r in s.execute(select(OutboxMessage)).scalars()}


def test_outbox_delivers_to_every_configured_channel(outbox, receivers):
    store, settings, notifier = outbox
    with store.write() as s:
        assert enqueue(s, settings, _note()) == 3
    assert notifier.deliver_due() == 3
    assert all(r.sent_at for r in _rows(store).values())
    assert receivers.received["hook"][0]["event"] == "escalated"
    assert receivers.received["pagerduty"][0]["routing_key"] == KEY
    assert "routing_key" not in str(_rows(store)["pagerduty"].payload)   # secrets are not stored


def test_awaiting_approval_does_not_page(outbox):
    store, settings, _ = outbox
    with store.write() as s:
        assert enqueue(s, settings, _note(NotifyEvent.AWAITING_APPROVAL)) == 2
    assert set(_rows(store)) == {"slack", "webhook"}


def test_a_channel_that_is_down_keeps_its_message(outbox, receivers):
    store, settings, notifier = outbox
    receivers.fail_next["slack"] = 3          # tenacity's 3 quick tries all fail: one outbox attempt
    with store.write() as s:
        enqueue(s, settings, _note())
    assert notifier.deliver_due() == 2
    slack = _rows(store)["slack"]
    assert slack.sent_at is None and slack.attempts == 1 and not slack.dead and "503" in slack.last_error
    with store.write() as s:                  # the backoff has passed
        s.get(OutboxMessage, slack.id).next_attempt_at = slack.created_at
    assert notifier.deliver_due() == 1
    assert _rows(store)["slack"].sent_at is not None
    assert len(receivers.received["slack"]) == 1


def test_two_senders_at_once_send_each_message_once(outbox, receivers):
    """The outbox's singleton moves between replicas; for a moment two may send. Each row is claimed before its send:
    of two senders exactly one sends it; a sender that died mid-send leaves its row to the next after the claim."""
    store, settings, _ = outbox
    with store.write() as s:
        for n in range(20):
            enqueue(s, settings, _note(text=f"message {n}"))        # slack, pagerduty, webhook: 60 rows
    senders = [Notifier(store, settings), Notifier(store, settings)]
    go, sent = threading.Barrier(2), []

    def send(notifier: Notifier) -> None:
        go.wait()
        sent.append(notifier.deliver_due(limit=100))

    threads = [threading.Thread(target=send, args=(n,)) for n in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(sent) == 60 and all(sent), sent                      # both sent some, none twice
    texts = sorted(b["text"] for b in receivers.received["hook"])
    assert texts == sorted(f"message {n}" for n in range(20))
    with store.write() as s:
        enqueue(s, settings, _note(text="cut off"))
    assert senders[0]._claim(max(_ids(store)))                      # claimed, then its sender died
    assert senders[1].deliver_due() == 2                            # the other two channels' rows
    with store.write() as s:                                        # the claim ran out
        s.execute(update(OutboxMessage).where(OutboxMessage.sent_at.is_(None)).values(next_attempt_at=utcnow()))
    assert senders[1].deliver_due() == 1


def _ids(store) -> list[int]:
    with store.read() as s:
        return list(s.execute(select(OutboxMessage.id)).scalars())


def test_a_refused_message_is_given_up_not_retried(outbox, receivers):
    store, settings, notifier = outbox
    bad_key = Settings(**{**settings.model_dump(), "pagerduty_routing_key": "short"})
    with store.write() as s:
        enqueue(s, bad_key, _note())
    Notifier(store, bad_key).deliver_due()
    pd = _rows(store)["pagerduty"]
    assert pd.dead and pd.attempts == 1 and "400" in pd.last_error
    assert receivers.received["pagerduty"] == []


# ---- Teams and tickets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("event", list(NotifyEvent))
def test_every_event_makes_a_card_teams_takes(event):
    body = teams_payload(_note(event, report=["likely cause: x"], approval_url="http://127.0.0.1:8080/ui/approvals/a1"),
                         "Title")
    assert _teams(body, json.dumps(body).encode()) == (202, "")


def test_teams_shows_alert_text_as_plain_text_and_links_only_to_remediator():
    hostile = "see [here](http://evil.example) **now** <at>everyone</at>"
    card = teams_payload(_note(text=hostile, preview=hostile), "Escalated")["attachments"][0]["content"]
    assert not [e for e in card["body"] if e["type"] == "TextBlock"]   # TextBlock renders markdown; TextRun does not
    runs = [i["text"] for e in card["body"] if e["type"] == "RichTextBlock" for i in e["inlines"]]
    assert hostile in runs
    assert {a["url"] for a in card["actions"]} == {"http://127.0.0.1:8080/incidents/20261124-170000-abcdef"}


def test_a_huge_diagnosis_is_cut_to_what_teams_takes(outbox_all, receivers):
    store, settings, notifier = outbox_all
    with store.write() as s:
        enqueue(s, settings, _note(report=["y" * 5000] * 40, preview="z" * 50_000))
    notifier.deliver_due()
    assert _rows(store)["teams"].sent_at is not None and len(receivers.received["teams"]) == 1


@pytest.fixture
def outbox_all(tmp_path, receivers, database_url):
    store = Store(database_url or f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    settings = Settings(data_dir=tmp_path, teams_webhook_url=f"{receivers.url}/teams", jira_url=f"{receivers.url}/jira",
                        jira_user=JIRA_USER, jira_api_token=JIRA_TOKEN, jira_project="OPS",
                        ticket_webhook_url=f"{receivers.url}/ticket", notify_max_attempts=3)
    return store, settings, Notifier(store, settings)


def _all_rows(store) -> list[OutboxMessage]:
    with store.read() as s:
        return list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())


def test_one_ticket_per_incident_updated_never_duplicated(outbox_all, receivers):
    store, settings, notifier = outbox_all
    with store.write() as s:
        assert enqueue(s, settings, _note(NotifyEvent.ESCALATED)) == 3          # teams, jira, ticket
    assert notifier.deliver_due() == 3
    with store.write() as s:   # a second escalation of the same incident, then its fix
        enqueue(s, settings, _note(NotifyEvent.ESCALATED, text="still down"))
        enqueue(s, settings, _note(NotifyEvent.FIXED, state="resolved"))
    assert notifier.deliver_due() == 6
    (issue,) = receivers.jira.issues.values()
    assert issue["fields"]["labels"] == ["remediator", "remediator-20261124-170000-abcdef"]
    assert issue["fields"]["project"] == {"key": "OPS"} and issue["fields"]["summary"].startswith("Escalated")
    assert len(issue["comments"]) == 2 and "still down" in issue["comments"][0] and "Fixed" in issue["comments"][1]
    (events,) = receivers.desk.tickets.values()
    assert [e["action"] for e in events] == ["open", "open", "update"]
    # the same message sent again (its answer was lost): the desk applies it once, Jira finds the issue
    with store.write() as s:
        for row in s.execute(select(OutboxMessage)).scalars():
            row.sent_at = None
    notifier.deliver_due()
    assert len(receivers.desk.tickets["20261124-170000-abcdef"]) == 3 and len(receivers.jira.issues) == 1


def test_news_of_an_incident_with_no_ticket_opens_none(outbox_all, receivers):
    store, settings, notifier = outbox_all
    with store.write() as s:
        assert enqueue(s, settings, _note(NotifyEvent.FIXED, state="resolved")) == 1   # teams only
        assert enqueue(s, settings, _note(NotifyEvent.AWAITING_APPROVAL, incident_id="i2")) == 1
        assert enqueue(s, settings, _note(NotifyEvent.AWAITING_APPROVAL, incident_id="i3",
                                          report=["likely cause: a bad release"])) == 3   # a Level 2 diagnosis
    notifier.deliver_due()
    assert [i["fields"]["labels"][1] for i in receivers.jira.issues.values()] == ["remediator-i3"]


def test_alert_text_cannot_break_out_of_the_tickets_plain_text(outbox_all, receivers):
    store, settings, notifier = outbox_all
    with store.write() as s:
        enqueue(s, settings, _note(text="x {noformat} [evil|http://evil.example] {noformat}\nsummary: pwned", preview=""))
    notifier.deliver_due()
    (issue,) = receivers.jira.issues.values()
    description = issue["fields"]["description"]
    inside = description.split("{noformat}")
    assert len(inside) == 3 and "[evil|http://evil.example]" in inside[1]   # one block, the link inside it
    assert "\n" not in issue["fields"]["summary"]


def test_teams_and_tickets_keep_their_messages_through_an_outage(outbox_all, receivers):
    store, settings, notifier = outbox_all
    for name in ("teams", "jira", "ticket"):
        receivers.fail_next[name] = 3        # tenacity's 3 quick tries all fail: one outbox attempt each
    with store.write() as s:
        enqueue(s, settings, _note())
    assert notifier.deliver_due() == 0
    rows = _all_rows(store)
    assert all(r.sent_at is None and r.attempts == 1 and not r.dead and "503" in r.last_error for r in rows)
    with store.write() as s:   # the backoff has passed
        for row in s.execute(select(OutboxMessage)).scalars():
            row.next_attempt_at = row.created_at
    assert notifier.deliver_due() == 3
    assert len(receivers.received["teams"]) == 1 and len(receivers.jira.issues) == 1 and len(receivers.desk.tickets) == 1


def test_a_wrong_jira_token_is_given_up_not_retried(outbox_all, receivers):
    store, settings, notifier = outbox_all
    wrong = Settings(**{**settings.model_dump(), "jira_api_token": "not-the-token", "teams_webhook_url": None,
                        "ticket_webhook_url": None})
    with store.write() as s:
        enqueue(s, wrong, _note())
    Notifier(store, wrong).deliver_due()
    (row,) = _all_rows(store)
    assert row.dead and "401" in row.last_error and "not-the-token" not in row.last_error
    assert receivers.jira.issues == {}


def test_a_channel_is_one_entry_of_the_registry(tmp_path, monkeypatch):
    """The outbox asks only the registry (outbound/channels.py): a channel added there is queued for the events it
    takes and delivered through its own function; the outbox's code does not change."""
    from remediator.engine.outbound import channels, notify
    sent: list[tuple[str, int]] = []
    echo = channels.Channel("echo", lambda s: True, lambda call, s, note, message_id: sent.append((note.title, message_id)),
                            takes=lambda note, had: note.event == NotifyEvent.FAILED)
    monkeypatch.setattr(notify, "CHANNELS", [*channels.CHANNELS, echo])
    monkeypatch.setattr(notify, "BY_NAME", {**channels.BY_NAME, "echo": echo})
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.migrate()
    settings = Settings(data_dir=tmp_path)   # no other channel configured
    with store.write() as session:
        assert enqueue(session, settings, _note(NotifyEvent.FIXED)) == 0       # not an event it takes
        assert enqueue(session, settings, _note(NotifyEvent.FAILED)) == 1
    assert Notifier(store, settings).deliver_due() == 1
    (message_id,) = [m for (_, m) in sent]
    assert sent == [("Remediation failed", message_id)]
