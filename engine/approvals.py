"""Approvals: a person approves or rejects exactly the dry run they were shown; pending ones expire.

An approval is bound to the Preview's digest: after approval the pipeline runs check mode again
and runs for real only if the new dry run has the same digest.
"""
from __future__ import annotations

from sqlalchemy import select

from engine import incidents
from engine.errors import ConflictError, NotFound
from engine.models import IncidentState
from engine.notify import NotifyEvent, notify_incident
from engine.settings import Settings
from engine.store import Approval, Incident, Store, utcnow

__all__ = ["decide", "expire_due"]


def decide(store: Store, settings: Settings, incident_id: str, *, approve: bool, by: str, comment: str = "",
           digest: str | None = None) -> str:
    """Approve or reject the pending approval of an incident; returns the incident's new state."""
    by = by.strip()
    if not by:
        raise ConflictError("say who decides (by): an approval without a name is not accepted")
    with store.write() as session:
        inc = session.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id}")
        approval = session.execute(select(Approval).where(Approval.incident_id == incident_id,
                                                          Approval.state == "pending")).scalar_one_or_none()
        if inc.state != IncidentState.AWAITING_APPROVAL or approval is None:
            raise ConflictError(f"incident {incident_id} is {inc.state}, not awaiting approval")
        if approval.expires_at <= utcnow():
            raise ConflictError(f"the approval of incident {incident_id} expired at {approval.expires_at.isoformat()}Z")
        if digest is not None and digest != approval.preview_digest:
            raise ConflictError("the preview you saw is not the one awaiting approval (digest differs); look again")
        approval.state = "approved" if approve else "rejected"
        approval.decided_by = by[:128]
        approval.decided_at = utcnow()
        approval.comment = comment[:2000]
        data = {"approval": approval.id, "by": approval.decided_by, "comment": approval.comment,
                "digest": approval.preview_digest}
        if approve:
            incidents.transition(session, inc, IncidentState.APPROVED, f"approved by {approval.decided_by}", data=data)
        else:
            reason = f"rejected by {approval.decided_by}" + (f": {approval.comment}" if approval.comment else "")
            incidents.transition(session, inc, IncidentState.REJECTED, reason, data=data)
            notify_incident(session, settings, inc, NotifyEvent.REJECTED, reason)
        return inc.state


def expire_due(store: Store, settings: Settings) -> int:
    """Expire pending approvals past their deadline; returns how many."""
    with store.write() as session:
        due = session.execute(select(Approval).where(Approval.state == "pending", Approval.expires_at <= utcnow())).scalars().all()
        for approval in due:
            approval.state = "expired"
            approval.decided_at = utcnow()
            inc = session.get(Incident, approval.incident_id)
            if inc is not None and inc.state == IncidentState.AWAITING_APPROVAL:
                reason = f"nobody approved within {settings.approval_ttl_s} s; nothing was run"
                incidents.transition(session, inc, IncidentState.EXPIRED, reason)
                notify_incident(session, settings, inc, NotifyEvent.EXPIRED, reason)
        return len(due)
