"""What every notification channel is told (`Notification`), and each event's title."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from remediator.engine.model.states import NotifyEvent

__all__ = ["Notification", "TITLE"]

TITLE = {
    NotifyEvent.FIXED: "Fixed", NotifyEvent.AUTO_RESOLVED: "Resolved on its own",
    NotifyEvent.AWAITING_APPROVAL: "Needs approval", NotifyEvent.ESCALATED: "Escalated: a person must look",
    NotifyEvent.DENIED: "Denied by policy: a person must look", NotifyEvent.FAILED: "Remediation failed",
    NotifyEvent.EXPIRED: "Approval expired", NotifyEvent.REJECTED: "Rejected",
    NotifyEvent.BREAKER_OPEN: "Circuit breaker open: automatic runs paused",
}


class Notification(BaseModel):
    """What every channel is told; the generic webhook receives exactly this as JSON."""

    model_config = ConfigDict(frozen=True)
    event: NotifyEvent
    incident_id: str
    alertname: str
    host: str | None
    severity: str
    state: str
    text: str
    entry: str | None = None
    preview: str = ""
    report: list[str] = []       # a Level 2 diagnosis, as lines (Report.lines())
    url: str = ""
    # an approval request: where to review it (a page; opening it never approves), risk, deadline
    approval_url: str = ""
    risk: str = ""
    expires_at: str = ""
    approvers: int = 0
    approval_id: str = ""        # which request, and the digest of its dry run: what a Slack button's click decides on
    digest: str = ""
    dedup_key: str = ""          # PagerDuty's; default the incident id

    @property
    def title(self) -> str:
        return TITLE[self.event]
