"""Microsoft Teams: an Adaptive Card posted to an incoming webhook or a Workflows "when a webhook request is
received" trigger (both take the same message: one attachment of contentType application/vnd.microsoft.card.adaptive).

Alert text is untrusted: it goes into TextRun elements of RichTextBlocks, which Teams never renders as markdown (a
TextBlock would turn `[here](http://evil)` into a link). Links come only from remediator's own URLs, as
Action.OpenUrl buttons that open a page; approving is a POST from that page, never a link.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remediator.engine.outbound.message import Notification

__all__ = ["teams_payload", "MAX_BYTES"]

MAX_BYTES = 28_000   # Teams refuses a message over about 28 KB


def _plain(text: str, *, weight: str = "default", size: str = "default") -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, "weight": weight, "size": size}],
            "spacing": "small"}


def teams_payload(note: Notification, title: str) -> dict[str, Any]:
    """The message: title, facts, reason, diagnosis and dry run as plain text, links to the incident and approval."""
    heading = f"{title} — {note.alertname} on {note.host or 'an unknown host'}"
    body: list[dict[str, Any]] = [
        _plain(heading[:200], weight="bolder", size="medium"),
        # FactSet values render as markdown: only remediator's own values there; the sender's severity is a TextRun
        {"type": "FactSet", "facts": [{"title": k, "value": v[:200]} for k, v in (
            ("Incident", note.incident_id), ("State", note.state), ("Action", note.entry or "none"))]},
        _plain(f"Severity: {note.severity}"[:200]),
        _plain(note.text[:3000] or "-"),
    ]
    if note.report:
        body += [_plain("Diagnosis", weight="bolder"), _plain("\n".join(note.report)[:6000])]
    if note.preview:
        body += [_plain("Dry run", weight="bolder"), _plain(note.preview[:6000])]
    actions: list[dict[str, Any]] = []
    if note.approval_url:
        who = "two distinct approvers" if note.approvers > 1 else "one approver"
        body.append({"type": "FactSet", "facts": [{"title": "Risk", "value": note.risk or "-"},
                                                  {"title": "Expires", "value": f"{note.expires_at} (needs {who})"}]})
        actions.append({"type": "Action.OpenUrl", "title": "Review the dry run and decide", "url": note.approval_url})
    if note.url:
        actions.append({"type": "Action.OpenUrl", "title": f"Incident {note.incident_id}", "url": note.url})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "body": body, "actions": actions, "msteams": {"width": "Full"}}
    return {"type": "message", "summary": heading[:200],
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}
