"""Approvals: a person decides from the dry run, and the run that follows is exactly that dry run.

A request is made when policy says `approve` and the check-mode run is clean. It shows the Preview
(kept with the request), the alert, the evidence, the planner's rationale, the rules that asked,
the risk class, how to roll back, and when it expires. Only people decide (service tokens never:
the engine does not approve its own requests); high-risk entries, or a rule that says so, need two
distinct approvers; one rejection rejects. Every vote names the Preview digest its voter saw. Whoever
posted an alert behind the incident never decides on it.

After approval the pipeline runs check mode again; if that dry run differs from the approved one
(`drift()`), nothing runs and a new request with the new dry run replaces the old (`request(...,
supersedes=...)`), saying what changed.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from remediator.engine.catalog.loader import Catalog
from remediator.engine.errors import ConflictError, Forbidden, NotFound
from remediator.engine.model.ids import new_approval_id
from remediator.engine.model.records import Preview, Report
from remediator.engine.model.states import ApprovalState, IncidentState
from remediator.engine.people.identities import Identity, Role
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import AlertRow, Approval, ApprovalVote, Approver, Delivery, Incident, incident_row, utcnow

__all__ = ["request", "vote", "vote_on_incident", "expire_due", "drift", "ApprovalDetail", "VoteView",
           "list_approvals", "get_approval"]


def request(session: Session, settings: Settings, inc: Incident, preview: Preview, *, required: int, risk: str,
            rules: list[str], reasons: list[str], supersedes: str | None = None) -> Approval:
    """A new pending request for this incident's dry run (in the caller's transaction)."""
    approval = Approval(id=new_approval_id(), incident_id=inc.id, preview_digest=preview.digest, state=ApprovalState.PENDING,
                        expires_at=utcnow() + timedelta(seconds=settings.approval_ttl_s),
                        preview=preview,
                        required=max(1, required), risk=risk, rules=rules, reasons="; ".join(reasons),
                        supersedes=supersedes)
    session.add(approval)
    return approval


def _pending(session: Session, approval_id: str) -> tuple[Approval, Incident]:
    approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id!r}")
    inc = incident_row(session, approval.incident_id)
    if approval.state != ApprovalState.PENDING or inc.state != IncidentState.AWAITING_APPROVAL:
        raise ConflictError(f"approval {approval_id} is {approval.state} (incident {inc.id} is {inc.state}); "
                            f"nothing is waiting for a decision")
    if approval.expires_at <= utcnow():
        raise ConflictError(f"approval {approval_id} expired at {approval.expires_at.isoformat()}Z; nothing was run")
    return approval, inc


def vote(store: Store, lifecycle: Lifecycle, approval_id: str, who: Identity, *, approve: bool, comment: str = "",
         digest: str | None = None) -> str:
    """One person's approve or reject; returns the approval's state (pending while more approvers are needed)."""
    who.require(Role.APPROVER, "approve or reject")
    with store.write() as session:
        approval, inc = _pending(session, approval_id)
        if digest is not None and digest != approval.preview_digest:
            raise ConflictError("the dry run you saw is not the one awaiting approval (its digest differs); look again")
        posters = set(session.execute(select(Delivery.sender).join(AlertRow, AlertRow.delivery_id == Delivery.id)
                                      .where(AlertRow.incident_id == inc.id)).scalars())
        if who.name in posters:   # names are unique across senders and people; this holds even if one slips through
            raise Forbidden(f"{who.name} posted the alert behind incident {inc.id}; someone else decides on its fix")
        votes = session.execute(select(ApprovalVote).where(ApprovalVote.approval_id == approval.id)).scalars().all()
        if any(v.approver == who.name for v in votes):
            raise ConflictError(f"{who.name} has already decided on approval {approval.id}"
                                + ("; it needs another, distinct approver" if approval.required > 1 else ""))
        if approve and approval.required > 1 and who.approver_id is not None:
            account = session.get(Approver, who.approver_id)
            if account is not None and account.created_at > approval.requested_at:
                # Otherwise one admin mints a second approver on the spot and is both "distinct" people.
                raise ConflictError(f"{who.name}'s token was issued after this request opened; it needs "
                                    f"{approval.required} distinct approvers who held the role before it")
        comment = comment.strip()[:2000]
        session.add(ApprovalVote(approval_id=approval.id, approver=who.name, decision="approve" if approve else "reject",
                                 comment=comment, digest=approval.preview_digest))
        data = {"approval": approval.id, "by": who.name, "role": who.role.value, "comment": comment,
                "digest": approval.preview_digest, "decision": "approve" if approve else "reject"}
        audit.append(session, "approval.vote", data, inc.id)
        if not approve:
            _close(approval, ApprovalState.REJECTED, who.name, comment)
            reason = f"rejected by {who.name}" + (f": {comment}" if comment else "")
            lifecycle.close(session, inc, IncidentState.REJECTED, reason, data=data)
            return approval.state
        approvers = {v.approver for v in votes if v.decision == "approve"} | {who.name}
        if len(approvers) < approval.required:
            return approval.state     # pending: another person must approve
        _close(approval, ApprovalState.APPROVED, ", ".join(sorted(approvers)), comment)
        lifecycle.move(session, inc, IncidentState.APPROVED, f"approved by {approval.decided_by}", data=data)
        return approval.state


def vote_on_incident(store: Store, lifecycle: Lifecycle, incident_id: str, who: Identity, *, approve: bool,
                     comment: str = "", digest: str | None = None) -> str:
    """`vote()` on the incident's pending request."""
    who.require(Role.APPROVER, "approve or reject")
    with store.read() as session:
        inc = session.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id!r}")
        approval_id = session.execute(select(Approval.id).where(Approval.incident_id == incident_id,
                                                                Approval.state == ApprovalState.PENDING)).scalar_one_or_none()
    if approval_id is None:
        raise ConflictError(f"incident {incident_id} is {inc.state}, not awaiting approval")
    return vote(store, lifecycle, approval_id, who, approve=approve, comment=comment, digest=digest)


def _close(approval: Approval, state: str, by: str, comment: str) -> None:
    approval.state, approval.decided_by, approval.decided_at, approval.comment = state, by[:128], utcnow(), comment


def expire_due(store: Store, lifecycle: Lifecycle) -> int:
    """Expire pending requests past their deadline (the incident is expired, and people are paged)."""
    with store.write() as session:
        due = session.execute(select(Approval).where(Approval.state == ApprovalState.PENDING,
                                                     Approval.expires_at <= utcnow())).scalars().all()
        for approval in due:
            _close(approval, ApprovalState.EXPIRED, "", "")
            inc = session.get(Incident, approval.incident_id)
            if inc is not None and inc.state == IncidentState.AWAITING_APPROVAL:
                ttl_s = round((approval.expires_at - approval.requested_at).total_seconds())
                reason = (f"nobody approved within {ttl_s} s; nothing was run, "
                          "a person must look")
                lifecycle.close(session, inc, IncidentState.EXPIRED, reason)
        return len(due)


def drift(approved: Preview | None, now: Preview) -> list[str]:
    """What differs, materially, between the approved dry run and the new one (empty: the same)."""
    def changes(p: Preview | None) -> dict[str, dict[str, tuple]]:
        return {h.host: {t.task: (t.status, t.diff, tuple(t.items)) for t in h.tasks if t.changed}
                for h in (p.hosts if p else [])}
    before, after = changes(approved), changes(now)
    out = []
    for host in sorted(set(before) | set(after)):
        if host not in before or host not in after:
            out.append(f"host {host} {'appears' if host in after else 'is gone'}")
            continue
        for task in sorted(set(before[host]) | set(after[host])):
            if task not in before[host]:
                out.append(f"{host}: task {task!r} would now change")
            elif task not in after[host]:
                out.append(f"{host}: task {task!r} would no longer change")
            elif before[host][task] != after[host][task]:
                out.append(f"{host}: task {task!r} would change differently")
    return out


# ---- what an approver sees ----------------------------------------------------------------

class VoteView(BaseModel):
    approver: str
    decision: str
    comment: str
    digest: str
    at: datetime


class ApprovalDetail(BaseModel):
    """Everything a person decides from; the same in the API, the CLI, Slack's link and the page."""

    id: str
    incident_id: str
    state: str
    incident_state: str
    requested_at: datetime
    expires_at: datetime
    required: int
    votes: list[VoteView]
    digest: str
    entry: str | None
    params: dict[str, Any]
    hosts: list[str]
    risk: str
    rules: list[str]
    reasons: str
    rationale: str
    planner: str
    alertname: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    evidence: dict[str, Any]
    report: Report | None = None       # a Level 2 diagnosis behind the proposal
    preview: Preview | None
    rollback: str
    supersedes: str | None
    decided_by: str
    decided_at: datetime | None


def _detail(session: Session, catalog: Catalog, a: Approval) -> ApprovalDetail:
    inc = incident_row(session, a.incident_id)
    proposal = inc.proposal
    votes = session.execute(select(ApprovalVote).where(ApprovalVote.approval_id == a.id).order_by(ApprovalVote.id)).scalars()
    entry = catalog.entries.get(proposal.entry) if proposal else None
    return ApprovalDetail(
        id=a.id, incident_id=inc.id, state=a.state, incident_state=inc.state, requested_at=a.requested_at,
        expires_at=a.expires_at, required=a.required, votes=[VoteView.model_validate(v, from_attributes=True) for v in votes],
        digest=a.preview_digest, entry=proposal.entry if proposal else None, params=proposal.params if proposal else {},
        hosts=proposal.hosts if proposal else [], risk=a.risk or (str(entry.meta.risk) if entry else ""), rules=a.rules or [],
        reasons=a.reasons, rationale=proposal.rationale if proposal else "",
        planner=(proposal.planner + (f" ({proposal.fallback})" if proposal.fallback else "")) if proposal else "",
        alertname=inc.alertname, severity=inc.severity, labels=inc.labels, annotations=inc.annotations,
        evidence=inc.evidence or {}, report=inc.report, preview=a.preview or inc.preview, rollback=entry.meta.rollback if entry else "",
        supersedes=a.supersedes, decided_by=a.decided_by, decided_at=a.decided_at)


def list_approvals(store: Store, catalog: Catalog, state: str | None = "pending", limit: int = 100) -> list[ApprovalDetail]:
    """Newest first; state None lists every state."""
    q = select(Approval).order_by(Approval.requested_at.desc()).limit(max(1, min(limit, 1000)))
    if state:
        q = q.where(Approval.state == state)
    with store.read() as session:
        return [_detail(session, catalog, a) for a in session.execute(q).scalars().all()]


def get_approval(store: Store, catalog: Catalog, approval_id: str) -> ApprovalDetail:
    with store.read() as session:
        a = session.get(Approval, approval_id)
        if a is None:
            raise NotFound(f"no approval {approval_id!r}")
        return _detail(session, catalog, a)
