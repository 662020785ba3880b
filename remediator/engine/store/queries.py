"""Read models for the API and the CLI: incidents (a list row, the whole story of one) and deliveries."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, select

from remediator.engine.errors import NotFound
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Report
from remediator.engine.store.db import Store
from remediator.engine.store.tables import AlertRow, Approval, AuditEvent, Delivery, InboxRow, Incident, OutboxMessage, Run

__all__ = ["IncidentSummary", "IncidentDetail", "DeliveryView", "list_incidents", "get_incident", "get_delivery"]


class IncidentSummary(BaseModel):
    id: str
    state: str
    alertname: str
    host: str | None
    severity: str
    entry: str | None
    firing: bool
    reason: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class AlertView(BaseModel):
    fingerprint: str
    status: str
    starts_at: str
    labels: dict[str, str]
    annotations: dict[str, str]
    received_at: datetime


class RunView(BaseModel):
    ident: str
    entry: str
    mode: str
    hosts: list[str]
    params: dict[str, Any]
    status: str
    rc: int | None
    started_at: datetime
    duration_s: float | None
    summary: str
    artifact_dir: str


class NotificationView(BaseModel):
    channel: str
    event: str
    created_at: datetime
    attempts: int
    sent_at: datetime | None
    dead: bool
    last_error: str


class ApprovalView(BaseModel):
    id: str
    state: str
    preview_digest: str
    requested_at: datetime
    expires_at: datetime
    decided_by: str
    decided_at: datetime | None
    comment: str


class TimelineEvent(BaseModel):
    seq: int
    at: str
    kind: str
    data: dict[str, Any]


class IncidentDetail(IncidentSummary):
    labels: dict[str, str]
    annotations: dict[str, str]
    truncated_alerts: int
    evidence: dict[str, Any]
    proposal: ActionProposal | None
    decision: PolicyDecision | None
    preview: Preview | None
    transcript: dict[str, Any] | None = None   # the LLM planner's conversation (planner: llm)
    report: Report | None = None               # a Level 2 diagnosis (remediator/engine/decide/reports.py)
    alerts: list[AlertView]
    runs: list[RunView]
    approvals: list[ApprovalView]
    notifications: list[NotificationView]
    timeline: list[TimelineEvent]


def _summary_fields(inc: Incident) -> dict[str, Any]:
    return {k: getattr(inc, k) for k in IncidentSummary.model_fields}


def list_incidents(store: Store, state: str | None = None, limit: int = 100, search: str | None = None
                   ) -> list[IncidentSummary]:
    """Newest first; `search`: the text in the id, alert, host, entry or reason (any case; `%` and `_` are text)."""
    q = select(Incident).order_by(Incident.created_at.desc()).limit(max(1, min(limit, 1000)))
    if state:
        q = q.where(Incident.state == state)
    if search and search.strip():
        text = search.strip()
        q = q.where(or_(*(column.icontains(text, autoescape=True) for column in
                          (Incident.id, Incident.alertname, Incident.host, Incident.entry, Incident.reason))))
    with store.read() as session:
        return [IncidentSummary(**_summary_fields(i)) for i in session.execute(q).scalars()]


def get_incident(store: Store, incident_id: str) -> IncidentDetail:
    with store.read() as session:
        inc = session.get(Incident, incident_id)
        if inc is None:
            raise NotFound(f"no incident {incident_id!r}")

        def rows(model, *order):
            return session.execute(select(model).where(model.incident_id == incident_id).order_by(*order)).scalars().all()

        return IncidentDetail(
            **_summary_fields(inc), labels=inc.labels, annotations=inc.annotations, truncated_alerts=inc.truncated,
            evidence=inc.evidence or {}, proposal=inc.proposal, decision=inc.decision, preview=inc.preview,
            transcript=inc.transcript, report=inc.report,
            alerts=[AlertView.model_validate(a, from_attributes=True) for a in rows(AlertRow, AlertRow.id)],
            runs=[RunView.model_validate(r, from_attributes=True) for r in rows(Run, Run.id)],
            approvals=[ApprovalView.model_validate(a, from_attributes=True) for a in rows(Approval, Approval.requested_at)],
            notifications=[NotificationView.model_validate(n, from_attributes=True) for n in rows(OutboxMessage, OutboxMessage.id)],
            timeline=[TimelineEvent.model_validate(e, from_attributes=True) for e in rows(AuditEvent, AuditEvent.seq)],
        )


class DeliveryView(BaseModel):
    """One webhook: stored (acknowledged), and once taken in, what it became."""

    id: int
    received_at: datetime
    group_key: str
    status: str
    alerts: int
    truncated_alerts: int
    ingested: bool
    ingested_at: datetime | None
    sender: str | None = None         # the service token that posted it
    new: int | None = None
    duplicates: int | None = None
    incidents: list[str] | None = None
    escalated: list[str] | None = None
    failed: list[dict[str, str]] | None = None    # alerts the store refused; the others were taken in
    error: str | None = None


def get_delivery(store: Store, delivery_id: int, inbox: Store | None = None) -> DeliveryView:
    """A delivery taken in or about to be (in `deliveries`), else one still in the inbox store; NotFound otherwise."""
    if (found := _in_deliveries(store, delivery_id)) is not None:
        return found
    with (inbox or store).read() as session:
        w = session.get(InboxRow, delivery_id)
        if w is not None:
            return DeliveryView(id=w.id, received_at=w.received_at, group_key=w.group_key, status=w.status,
                                alerts=w.alerts_count, truncated_alerts=w.truncated, ingested=False, ingested_at=None,
                                sender=w.sender)
    # moved between the two reads (it reaches `deliveries` before it leaves the inbox): it is there now
    if (found := _in_deliveries(store, delivery_id)) is not None:
        return found
    raise NotFound(f"no delivery {delivery_id}")


def _in_deliveries(store: Store, delivery_id: int) -> DeliveryView | None:
    with store.read() as session:
        d = session.get(Delivery, delivery_id)
        if d is None:
            return None
        outcome = d.outcome or {}
        return DeliveryView(id=d.id, received_at=d.received_at, group_key=d.group_key, status=d.status,
                            alerts=d.alerts_count, truncated_alerts=d.truncated, ingested=d.ingested_at is not None,
                            ingested_at=d.ingested_at, sender=d.sender, **{k: outcome.get(k) for k in
                                                                           ("new", "duplicates", "incidents", "escalated",
                                                                            "failed", "error")})
