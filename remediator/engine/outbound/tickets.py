"""Tickets for what a person must follow up (an escalation, a denial, a failed or expired fix, a Level 2 diagnosis):
Jira (REST API v2, create issue) and a generic ticket webhook, through the same outbox as every channel.

One ticket per incident, updated, never duplicated on a resend or a retry: Jira's is found again by its label
`remediator-<incident id>` (searched before creating: a create whose answer was lost is found, not repeated); the
generic webhook's receiver upserts by `external_id` and sees each message's `Idempotency-Key` once. Later events
of an incident that has a ticket (fixed, resolved on its own) are added to it; they never open one.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from remediator.engine.outbound.message import Notification
    from remediator.engine.settings import Settings

__all__ = ["OPENING_EVENTS", "opens_ticket", "label_of", "jira_deliver", "ticket_webhook_deliver"]

#: events that open a ticket (or update the incident's one)
OPENING_EVENTS = frozenset({"escalated", "denied", "failed", "expired", "rejected", "breaker_open"})
Call = Callable[..., httpx.Response]   # (method, url, **httpx kwargs): the Notifier's, with its retries


def opens_ticket(note: Notification) -> bool:
    return note.event.value in OPENING_EVENTS or bool(note.report)


def label_of(incident_id: str) -> str:
    return f"remediator-{incident_id}"


_CLOSES = re.compile(r"\{\s*noformat[^}]*\}", re.IGNORECASE)   # {noformat}, {NoFormat}, {noformat:title=x} all close


def _noformat(text: str) -> str:
    # Jira wiki markup: untrusted text inside {noformat} is shown as typed (no links, no macros); it cannot close it
    return "{noformat}\n" + _CLOSES.sub("{ noformat }", text) + "\n{noformat}"


def _description(note: Notification, title: str) -> str:
    # The first line is remediator's own words only (host from the inventory, state, entry); the alert's name and
    # severity are the sender's and go into the plain-text block, where `[text|url]` and `!image!` stay text.
    lines = [f"{title} on {note.host or 'an unknown host'} (state {note.state}, action {note.entry or 'none'})", "",
             _noformat(f"alert: {note.alertname}\nseverity: {note.severity}\n\n{note.text[:8000]}")]
    if note.report:
        lines += ["", "*Diagnosis*", _noformat("\n".join(note.report)[:16000])]
    if note.preview:
        lines += ["", "*Dry run*", _noformat(note.preview[:16000])]
    for name, url in (("Review the dry run and decide", note.approval_url), ("Incident", note.url)):
        if url:   # remediator's own URLs only
            lines += ["", f"[{name}|{url}]"]
    return "\n".join(lines)


def jira_deliver(call: Call, settings: Settings, note: Notification, title: str) -> str:
    """Open the incident's issue, or comment on the one it has; returns what was done."""
    base = f"{str(settings.jira_url).rstrip('/')}/rest/api/2"
    token = settings.jira_api_token.get_secret_value() if settings.jira_api_token else ""
    auth = httpx.BasicAuth(settings.jira_user or "", token)
    label = label_of(note.incident_id)
    found = call("GET", f"{base}/search", params={"jql": f'labels = "{label}"', "fields": "key", "maxResults": 1},
                 auth=auth).json().get("issues", [])
    if found:
        key = found[0]["key"]
        call("POST", f"{base}/issue/{key}/comment", json={"body": _description(note, title)}, auth=auth)
        return f"commented on {key}"
    if not opens_ticket(note):
        return "no ticket to update"
    fields: dict[str, Any] = {
        "project": {"key": settings.jira_project}, "issuetype": {"name": settings.jira_issue_type},
        "summary": f"{title}: {note.alertname} on {note.host or 'an unknown host'}"[:250].replace("\n", " "),
        "description": _description(note, title), "labels": ["remediator", label]}
    created = call("POST", f"{base}/issue", json={"fields": fields}, auth=auth).json()
    return f"opened {created.get('key', '?')}"


def ticket_webhook_deliver(call: Call, settings: Settings, note: Notification, title: str, message_id: int) -> str:
    """POST the ticket as JSON; the receiver upserts by external_id and ignores a repeated Idempotency-Key."""
    body = {"external_id": note.incident_id, "action": "open" if opens_ticket(note) else "update",
            "event": note.event.value, "title": f"{title}: {note.alertname} on {note.host or 'an unknown host'}",
            "severity": note.severity, "host": note.host, "state": note.state, "text": note.text,
            "diagnosis": note.report, "preview": note.preview, "url": note.url, "approval_url": note.approval_url}
    call("POST", str(settings.ticket_webhook_url), json=body, headers={"Idempotency-Key": f"remediator-{message_id}"})
    return "sent"
