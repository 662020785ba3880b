"""Notifications: payload shapes the real services accept, escaping, and the outbox's retries."""
import pytest
from sqlalchemy import select

from remediator.engine.outbound.notify import Notification, Notifier, NotifyEvent, enqueue, pagerduty_payload, slack_payload
from remediator.engine.settings import Settings
from remediator.engine.store.db import OutboxMessage, Store
from tests.standins import Receivers, _pagerduty, _slack

pytestmark = pytest.mark.unit
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


def test_a_refused_message_is_given_up_not_retried(outbox, receivers):
    store, settings, notifier = outbox
    bad_key = Settings(**{**settings.model_dump(), "pagerduty_routing_key": "short"})
    with store.write() as s:
        enqueue(s, bad_key, _note())
    Notifier(store, bad_key).deliver_due()
    pd = _rows(store)["pagerduty"]
    assert pd.dead and pd.attempts == 1 and "400" in pd.last_error
    assert receivers.received["pagerduty"] == []
