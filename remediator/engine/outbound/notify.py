"""Notifications through an outbox, to every channel of the registry (outbound/channels.py: Slack, PagerDuty,
the generic webhook, Microsoft Teams, Jira and the ticket webhook).

`enqueue()` adds one outbox row per configured channel INSIDE the transaction that changes the
incident, so a notification exists exactly when the change does. `Notifier.deliver_due()` sends
what is due; a channel that is down keeps its rows (retried with backoff, tenacity inside one
attempt), so nothing is lost. Each row is claimed right before its send (its next attempt moved
`notify_claim_s` ahead, only if it is still due): two senders (the singleton's old and new holder, for a
moment) never send one message both; a sender that dies mid-send leaves that one row to the next
after its claim. Secrets (Slack URL, PagerDuty routing key) are added at send time
and never stored in the outbox.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import case, select, update
from sqlalchemy.orm import Session
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from remediator.engine.logs import redact
from remediator.engine.model.states import NotifyEvent
from remediator.engine.outbound.channels import BY_NAME, CHANNELS, pagerduty_payload, slack_payload, teams_payload
from remediator.engine.outbound.message import Notification
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Notice
from remediator.engine.store.tables import Approval, Incident, OutboxMessage, utcnow

__all__ = ["NotifyEvent", "Notification", "enqueue", "notify_incident", "notice", "Notifier", "slack_payload", "pagerduty_payload",
           "teams_payload"]

log = logging.getLogger(__name__)
# What is sent first when the outbox is behind: what a person must act on in time, then what needs a person, then
# news. A flood of escalations never holds an approval request (which expires) or a paused fleet's page behind it.
_URGENCY = case({NotifyEvent.AWAITING_APPROVAL.value: 0, NotifyEvent.BREAKER_OPEN.value: 0, NotifyEvent.FAILED.value: 0,
                 NotifyEvent.FIXED.value: 2, NotifyEvent.AUTO_RESOLVED.value: 2}, value=OutboxMessage.event, else_=1)


def enqueue(session: Session, settings: Settings, note: Notification) -> int:
    """Add an outbox row for every configured channel that takes this event; returns how many."""
    def had(channel: str) -> bool:
        return _had(session, note.incident_id, channel)
    channels = [c.name for c in CHANNELS if c.configured(settings) and c.takes(note, had)]
    for channel in channels:
        session.add(OutboxMessage(incident_id=note.incident_id, channel=channel, event=note.event.value,
                                  payload=note.model_dump(mode="json")))
    return len(channels)


def _had(session: Session, incident_id: str, channel: str) -> bool:
    return session.execute(select(OutboxMessage.id).where(OutboxMessage.incident_id == incident_id,
                                                          OutboxMessage.channel == channel).limit(1)).first() is not None


def notice(settings: Settings) -> Notice:
    """How the lifecycle (remediator/engine/store/lifecycle.py) tells people: notify_incident with these settings."""
    def tell(session: Session, inc: Incident, event: NotifyEvent, reason: str, *, approval: Approval | None = None,
             dedup_key: str = "") -> None:
        notify_incident(session, settings, inc, event, reason, approval=approval, dedup_key=dedup_key)
    return tell


def notify_incident(session: Session, settings: Settings, incident: Incident, event: NotifyEvent, text: str,
                    approval: Approval | None = None, dedup_key: str = "") -> int:
    """Enqueue `event` about an incident row, with its preview and a link to its page (and to the approval's)."""
    base = settings.public_url.rstrip("/")
    extra = {}
    if approval is not None:
        extra = {"approval_url": f"{base}/ui/approvals/{approval.id}", "risk": approval.risk,
                 "expires_at": approval.expires_at.isoformat(timespec="seconds") + "Z", "approvers": approval.required,
                 "approval_id": approval.id, "digest": approval.preview_digest}
    return enqueue(session, settings, Notification(
        event=event, incident_id=incident.id, alertname=incident.alertname, host=incident.host,
        severity=incident.severity, state=incident.state, text=text, entry=incident.entry,
        preview=incident.preview.summary if incident.preview else "", url=f"{base}/ui/incidents/{incident.id}",
        report=incident.report.lines() if incident.report else [], dedup_key=dedup_key, **extra))


def notify_digest(session: Session, settings: Settings, incidents: list[Incident], text: str, dedup_key: str) -> int:
    """One message for many incidents escalated together (one delivery's alerts on no host): a count, not a flood."""
    first = incidents[0]
    names = Counter(i.alertname for i in incidents)
    listed = ", ".join(f"{name} ×{n}" for name, n in names.most_common(10)) + (" …" if len(names) > 10 else "")
    return enqueue(session, settings, Notification(
        event=NotifyEvent.ESCALATED, incident_id=first.id, alertname=f"{len(incidents)} alerts", host=None,
        severity=min(incidents, key=lambda i: i.priority).severity, state=first.state,
        text=f"{text}: {listed}", url=f"{settings.public_url.rstrip('/')}/ui/incidents", dedup_key=dedup_key))


class _Retryable(Exception):
    pass


class _Permanent(Exception):
    pass


class Notifier:
    """Sends due outbox rows; one call of deliver_due() is one pass."""

    def __init__(self, store: Store, settings: Settings, client: httpx.Client | None = None,
                 on_sent: Callable[[str], None] = lambda _channel: None):
        self.store = store
        self.settings = settings
        self.client = client or httpx.Client(timeout=10.0)
        self.on_sent = on_sent      # the channel of each delivered notification (the metrics count them)
        self._sent: dict[str, deque[float]] = defaultdict(deque)   # per channel: when each of the last minute went

    def throttled(self) -> set[str]:
        """Channels that sent `notify_per_minute` messages in the last minute: theirs wait in the outbox."""
        now = time.monotonic()
        for window in self._sent.values():
            while window and now - window[0] >= 60:
                window.popleft()
        return {c for c, window in self._sent.items() if len(window) >= self.settings.notify_per_minute}

    def _send(self, channel: str, note: Notification, message_id: int) -> None:
        found = BY_NAME.get(channel)
        if found is None or not found.configured(self.settings):
            raise _Permanent(f"channel {channel} is no longer configured")
        found.deliver(self._call, self.settings, note, message_id)

    @retry(retry=retry_if_exception_type(_Retryable), stop=stop_after_attempt(3),
           wait=wait_exponential(multiplier=0.2, max=2), reraise=True)
    def _call(self, method: str, url: str, **kwargs) -> httpx.Response:
        """One request (httpx's keywords), tried 3 times when the far end is busy or down; a refusal is permanent."""
        try:
            r = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise _Retryable(f"HTTP {r.status_code}: {r.text[:200]}")
        if r.status_code >= 400:
            raise _Permanent(f"HTTP {r.status_code}: {r.text[:200]}")
        return r

    def _claim(self, message_id: int) -> bool:
        """This row is ours to send now: still due, and not claimed by another sender (PostgreSQL rechecks the
        condition on the row it waited for, so of two senders exactly one wins)."""
        now = utcnow()
        with self.store.write() as session:
            won = session.execute(update(OutboxMessage).where(
                OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None), OutboxMessage.dead.is_(False),
                OutboxMessage.next_attempt_at <= now).values(
                next_attempt_at=now + timedelta(seconds=self.settings.notify_claim_s)))
            return bool(won.rowcount)   # type: ignore[attr-defined]

    def deliver_due(self, limit: int = 50) -> int:
        """Send what is due, at most `notify_per_minute` per channel (the rest wait, nothing is dropped); returns how
        many were sent."""
        waiting = self.throttled()
        with self.store.read() as session:
            due = session.execute(select(OutboxMessage).where(
                OutboxMessage.sent_at.is_(None), OutboxMessage.dead.is_(False), OutboxMessage.channel.not_in(waiting),
                OutboxMessage.next_attempt_at <= utcnow()).order_by(_URGENCY, OutboxMessage.id).limit(limit)).scalars().all()
        sent = 0
        for msg in due:
            if msg.channel in waiting or msg.channel in self.throttled():
                waiting.add(msg.channel)
                continue
            if not self._claim(msg.id):
                continue   # another sender has it
            self._sent[msg.channel].append(time.monotonic())   # an attempt counts: a failing channel is not hammered
            error, permanent = "", False
            try:
                self._send(msg.channel, Notification.model_validate(msg.payload), msg.id)
            except _Retryable as exc:
                error = redact(str(exc))
            except _Permanent as exc:
                error, permanent = redact(str(exc)), True
            with self.store.write() as session:
                row = session.get(OutboxMessage, msg.id)
                if row is None:
                    continue
                row.attempts += 1
                if not error:
                    row.sent_at = utcnow()
                    sent += 1
                    self.on_sent(row.channel)
                    continue
                row.last_error = error[:2000]
                if permanent or row.attempts >= self.settings.notify_max_attempts:
                    row.dead = True
                    log.error("notification %s to %s given up: %s", row.id, row.channel, error)
                else:
                    row.next_attempt_at = utcnow() + timedelta(seconds=min(2 ** row.attempts, 300))
                    log.warning("notification %s to %s failed (attempt %d): %s", row.id, row.channel, row.attempts, error)
        return sent
