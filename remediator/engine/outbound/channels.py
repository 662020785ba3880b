"""The notification channels, one registry: what each needs configured, which events it takes, and how one message
is delivered. Adding a channel is adding an entry to `CHANNELS` (and its settings); the outbox (notify.py) asks
only this table.

Slack (Block Kit), PagerDuty Events API v2 and the generic webhook are here; Microsoft Teams' card is
outbound/teams.py, Jira and the ticket webhook outbound/tickets.py.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from remediator.engine.model.states import NotifyEvent
from remediator.engine.outbound import tickets
from remediator.engine.outbound.message import Notification
from remediator.engine.outbound.teams import MAX_BYTES as TEAMS_MAX_BYTES
from remediator.engine.outbound.teams import teams_payload
from remediator.engine.settings import Settings

__all__ = ["Channel", "CHANNELS", "BY_NAME", "Call", "slack_payload", "decision_buttons", "mrkdwn", "pagerduty_payload",
           "teams_payload"]

Call = tickets.Call   # (method, url, **httpx kwargs): the Notifier's, with its retries


@dataclass(frozen=True)
class Channel:
    """`configured(settings)`: it is set up; `takes(note, had)`: this event goes to it (`had(channel)`: the incident
    already has a message there); `deliver(call, settings, note, message_id)` sends one, raising on failure."""

    name: str
    configured: Callable[[Settings], bool]
    deliver: Callable[[Call, Settings, Notification, int], object]
    takes: Callable[[Notification, Callable[[str], bool]], bool] = lambda _note, _had: True


_PD_TRIGGER = {NotifyEvent.ESCALATED, NotifyEvent.DENIED, NotifyEvent.FAILED, NotifyEvent.EXPIRED, NotifyEvent.REJECTED,
               NotifyEvent.BREAKER_OPEN}
_PD_RESOLVE = {NotifyEvent.FIXED, NotifyEvent.AUTO_RESOLVED}
_PD_SEVERITY = {"critical": "critical", "page": "critical", "error": "error", "high": "error",
                "warning": "warning", "medium": "warning", "info": "info", "low": "info"}


def mrkdwn(text: str) -> str:
    """Alert text as Slack shows it: never a link, a mention or an @channel."""
    # Slack's escaping: alert text must not become a link, a mention or an @channel.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(note: Notification, buttons: bool = False) -> dict:
    """A Block Kit message (with `text` as the notification fallback). `buttons` (a signing secret is set): an approval
    request also carries Approve / Reject, whose value binds the request and the digest of the dry run it shows."""
    title = f"{note.title} — {note.alertname} on {note.host or 'an unknown host'}"
    fields = [f"*Incident*\n{mrkdwn(note.incident_id)}", f"*Severity*\n{mrkdwn(note.severity)}",
              f"*State*\n{mrkdwn(note.state)}", f"*Action*\n{mrkdwn(note.entry or 'none')}"]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(note.text)[:2900] or "-"}},
    ]
    if note.report:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "*Diagnosis*\n" + mrkdwn("\n".join(note.report))[:2800]}})
    if note.preview:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "*Dry run*\n" + mrkdwn(note.preview)[:2800]}})
    if note.approval_url:
        who = "two distinct approvers" if note.approvers > 1 else "one approver"
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Risk*\n{mrkdwn(note.risk or '-')}"},
            {"type": "mrkdwn", "text": f"*Expires*\n{mrkdwn(note.expires_at)} (needs {who})"}]})
        # A link opens the page (link scanners open links: a link never decides). A button is no link: Slack sends
        # its click as a request it signs, and remediator checks who clicked (docs/approvals.md).
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"<{note.approval_url}|Review the dry run and decide>"}})
        if buttons and note.approval_id and note.digest:
            blocks.append(decision_buttons(note.approval_id, note.digest))
    if note.url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{note.url}|incident {note.incident_id}>"}]})
    return {"text": mrkdwn(f"{title}: {note.text}")[:3000], "blocks": blocks}


def decision_buttons(approval_id: str, digest: str) -> dict:
    """Approve / Reject for one approval request and the dry run it shows (Slack: `actions`, `block_id` its id)."""
    value = json.dumps({"approval": approval_id, "digest": digest}, separators=(",", ":"))
    confirm = {"title": {"type": "plain_text", "text": "Approve this dry run?"}, "confirm": {"type": "plain_text",
               "text": "Approve"}, "deny": {"type": "plain_text", "text": "Not yet"}, "text": {"type": "mrkdwn",
               "text": "It runs for real exactly as its dry run showed; a changed dry run is asked again."}}
    return {"type": "actions", "block_id": f"approval:{approval_id}"[:255], "elements": [
        {"type": "button", "action_id": "approve", "style": "primary", "value": value, "confirm": confirm,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "reject", "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Reject"}}]}


def pagerduty_payload(note: Notification, routing_key: str) -> dict:
    """Events API v2: trigger on escalation, resolve when fixed; dedup_key is the incident id."""
    action = "resolve" if note.event in _PD_RESOLVE else "trigger"
    body: dict = {"routing_key": routing_key, "event_action": action, "dedup_key": note.dedup_key or note.incident_id}
    if action == "trigger":
        body["payload"] = {
            "summary": f"{note.title}: {note.alertname} on {note.host or 'unknown host'} — {note.text}"[:1024],
            "source": note.host or "remediator", "severity": _PD_SEVERITY.get(note.severity.lower(), "error"),
            "component": note.entry or "", "group": note.alertname, "class": note.event.value,
            "custom_details": {"state": note.state, "reason": note.text, "preview": note.preview,
                               "diagnosis": "\n".join(note.report)[:4000]},
        }
        if note.url:
            body["links"] = [{"href": note.url, "text": f"remediator incident {note.incident_id}"}]
    return body


def _fit_teams(note: Notification) -> dict:
    """The card, its long parts cut until the message fits what Teams takes."""
    body = teams_payload(note, note.title)
    if len(json.dumps(body)) > TEAMS_MAX_BYTES:
        short = note.model_copy(update={"report": [line[:200] for line in note.report[:20]], "preview": note.preview[:2000],
                                        "text": note.text[:1000]})
        body = teams_payload(short, note.title)
    return body


def _post(url: Callable[[Settings], str], body: Callable[[Settings, Notification], dict]
          ) -> Callable[[Call, Settings, Notification, int], object]:
    return lambda call, s, note, _message_id: call("POST", url(s), json=body(s, note))


def _secret(value) -> str:
    return value.get_secret_value() if value is not None else ""


CHANNELS: list[Channel] = [
    Channel("slack", lambda s: bool(s.slack_webhook_url),
            _post(lambda s: _secret(s.slack_webhook_url), lambda s, note: slack_payload(note, bool(s.slack_signing_secret)))),
    Channel("pagerduty", lambda s: bool(s.pagerduty_routing_key),
            _post(lambda s: s.pagerduty_url, lambda s, note: pagerduty_payload(note, _secret(s.pagerduty_routing_key))),
            takes=lambda note, _had: note.event in _PD_TRIGGER | _PD_RESOLVE),
    Channel("webhook", lambda s: bool(s.webhook_url),
            _post(lambda s: str(s.webhook_url), lambda _s, note: note.model_dump(mode="json"))),
    Channel("teams", lambda s: bool(s.teams_webhook_url),
            _post(lambda s: _secret(s.teams_webhook_url), lambda _s, note: _fit_teams(note))),
    # a ticket opens on what a person must follow up; later news goes to the incident's ticket, if it has one
    Channel("jira", lambda s: bool(s.jira_url),
            lambda call, s, note, _message_id: tickets.jira_deliver(call, s, note, note.title),
            takes=lambda note, had: tickets.opens_ticket(note) or had("jira")),
    Channel("ticket", lambda s: bool(s.ticket_webhook_url),
            lambda call, s, note, message_id: tickets.ticket_webhook_deliver(call, s, note, note.title, message_id),
            takes=lambda note, had: tickets.opens_ticket(note) or had("ticket")),
]
BY_NAME = {c.name: c for c in CHANNELS}
