"""Finding 11: one 1 MiB webhook (~7,000 alerts on unknown hosts) made 7,000 incidents, 7,000 queued Slack messages
and 21,000 audit events; nothing capped incidents or messages per delivery or sender. Now a delivery's hostless
escalations make one message, a sender opens at most `sender_incidents_per_minute` incidents a minute (the rest of
its alerts are kept on one escalated overflow incident: nothing dropped), and each channel sends at most
`notify_per_minute` messages a minute (the rest wait in the outbox)."""
import json

import pytest
from sqlalchemy import func, select

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.states import NotifyEvent
from remediator.engine.outbound.notify import Notification, Notifier, enqueue
from remediator.engine.settings import Settings
from remediator.engine.store.tables import AlertRow, Incident, OutboxMessage
from tests.engines import new_engine
from tests.fakes import take_in
from tests.standins import Receivers

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]
BASE = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())


def _flood(n: int, *, host: str | None, offset: int = 0) -> bytes:
    """n alerts in one webhook: distinct names on `host`, or on n hosts no inventory knows."""
    body = json.loads(json.dumps(BASE))
    first = body["alerts"][0]
    body["alerts"] = [{**first, "fingerprint": f"{offset + i:016x}",
                       "labels": {"alertname": f"Flood{offset + i}", "severity": "warning",
                                  **({"instance": host} if host else {"instance": f"ghost-{offset + i}:9100"})}}
                      for i in range(n)]
    return json.dumps(body).encode()


def _count(engine, *what):
    with engine.store.read() as session:
        return session.execute(select(func.count()).select_from(what[0]).where(*what[1:])).scalar_one()


def test_one_delivery_of_hostless_alerts_makes_one_message(tmp_path, database_url):
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, slack_webhook_url="http://127.0.0.1:9/slack/x",
                             webhook_url="http://127.0.0.1:9/hook", sender_incidents_per_minute=1000))
    result = take_in(engine, _flood(500, host=None))
    assert len(result.escalated) == 500
    assert _count(engine, OutboxMessage) == 2            # one per channel, not 500 each
    with engine.store.read() as session:
        text = session.execute(select(OutboxMessage.payload)).scalars().first()["text"]
    assert "500 alerts of delivery" in text and "Flood0 ×1" in text


def test_a_sender_past_its_cap_opens_one_overflow_incident_and_loses_nothing(tmp_path, database_url):
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, slack_webhook_url="http://127.0.0.1:9/slack/x",
                             sender_incidents_per_minute=50))
    take_in(engine, _flood(400, host="app-server-01"), sender="noisy")
    opened = _count(engine, Incident, Incident.sender == "noisy")
    assert opened == 51                                   # 50 within the cap, and the overflow
    assert _count(engine, AlertRow) == 400                # every alert is stored, attached to an incident
    assert _count(engine, AlertRow, AlertRow.incident_id.is_(None)) == 0
    with engine.store.read() as session:
        overflow = session.execute(select(Incident).where(Incident.correlation_key.like("overflow|%"))).scalar_one()
        held = session.execute(select(func.count()).select_from(AlertRow)
                               .where(AlertRow.incident_id == overflow.id)).scalar_one()
    assert held == 350 and overflow.state == "escalated" and "sender_incidents_per_minute" in overflow.reason
    assert _count(engine, OutboxMessage) <= 2              # the overflow's message (and no more than one digest)
    take_in(engine, _flood(5, host="app-server-01", offset=1000), sender="alertmanager")   # the control: others open
    assert _count(engine, Incident, Incident.sender == "alertmanager") == 5
    take_in(engine, _flood(5, host="app-server-01", offset=2000), sender="noisy")          # still capped this minute
    assert _count(engine, Incident, Incident.sender == "noisy") == 51                      # N6: joins the overflow
    assert _count(engine, AlertRow, AlertRow.incident_id == overflow.id) == 355


def test_a_flood_of_deliveries_past_the_cap_opens_one_overflow_and_tells_once(tmp_path, database_url):
    """N6: each delivery past the cap opened an overflow incident and a message of its own (10 posts: 7 of each)."""
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, slack_webhook_url="http://127.0.0.1:9/slack/x",
                                 sender_incidents_per_minute=5))
    for n in range(30):   # one hostless alert a delivery, as the reviewer posted them
        take_in(engine, _flood(1, host=None, offset=n), sender="ci")
    assert _count(engine, Incident, Incident.sender == "ci") == 6                         # before: 30
    assert _count(engine, Incident, Incident.correlation_key.like("overflow|%")) == 1
    assert _count(engine, AlertRow, AlertRow.incident_id.is_(None)) == 0                  # nothing dropped
    assert _count(engine, OutboxMessage) == 6                                             # 5 escalations, 1 overflow


def test_what_a_person_must_act_on_goes_before_a_flood(tmp_path, database_url):
    """N6: the outbox sent by id, so an approval request (which expires) waited behind every escalation queued
    before it."""
    with Receivers() as receivers:
        engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, slack_webhook_url=f"{receivers.url}/slack/T/B/x",
                                     notify_per_minute=2, sender_incidents_per_minute=1000))
        for n in range(20):
            take_in(engine, _flood(1, host=None, offset=n), sender="noisy")
        with engine.store.write() as session:
            enqueue(session, engine.settings, Notification(
                event=NotifyEvent.AWAITING_APPROVAL, incident_id="20261203-154006-8bcbfc", alertname="DiskSpaceLow",
                host="app-server-01", severity="warning", state="awaiting_approval", text="approve the clean-up"))
        assert Notifier(engine.store, engine.settings).deliver_due() == 2
        first = receivers.received["slack"][0]
    assert "approve the clean-up" in json.dumps(first)                                  # before: Flood0's escalation


def test_a_channel_sends_at_most_notify_per_minute_and_the_rest_wait(tmp_path, database_url):
    with Receivers() as receivers:
        engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, slack_webhook_url=f"{receivers.url}/slack/T/B/x",
                                 notify_per_minute=3, sender_incidents_per_minute=1000))
        for n in range(5):   # five deliveries, one hostless alert each: five messages
            take_in(engine, _flood(1, host=None, offset=n))
        notifier = Notifier(engine.store, engine.settings)
        assert notifier.deliver_due() == 3 and notifier.deliver_due() == 0
        assert len(receivers.received["slack"]) == 3
    assert _count(engine, OutboxMessage, OutboxMessage.sent_at.is_(None), OutboxMessage.dead.is_(False)) == 2
