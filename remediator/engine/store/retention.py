"""Retention: what remediator keeps grows with every alert, so old bulk goes after `retention_days`, old records
after `retention_incidents_days`.

Bulk: the bodies of deliveries taken in long ago (the alerts stay, as rows), notifications sent or given up, and
the run artifacts of closed incidents; incidents, alerts, runs and the audit chain stay, so `incidents show` and
`audit verify` still work. Records (`incidents=True`): closed incidents with their alerts, runs, approvals and
notifications, the deliveries left with no alert, and the audit events older than the cutoff that no remaining
incident's story needs, behind a signed checkpoint (remediator/engine/store/checkpoint.py): the rest of the chain
still verifies.

Records are the evidence, so their prune has rules of its own: nothing younger than `RECORDS_FLOOR` goes, the chain
is cut only as far as `remediator audit export` shipped it (what was not shipped stays, counted), the checkpoint's
key comes from outside the store, and the `store.pruned` event names every incident that went and who pruned.
"""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import Text, cast, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from remediator.engine.errors import PayloadError
from remediator.engine.model.states import FINAL_STATES
from remediator.engine.store import audit, checkpoint
from remediator.engine.store.db import Store
from remediator.engine.store.tables import AlertRow, Approval, ApprovalVote, AuditEvent, Delivery, Incident, OutboxMessage, Run, utcnow

__all__ = ["PruneReport", "prune", "RECORDS_FLOOR"]

PRUNED_BODY = {"pruned": True}
RECORDS_FLOOR = timedelta(days=7)   # a week to notice a prune that should not have happened, and to ship


class PruneReport(BaseModel):
    older_than: datetime
    delivery_bodies: int = 0
    notifications: int = 0
    run_dirs: int = 0
    incidents: int = 0
    audit_events: int = 0
    audit_unshipped: int = 0   # old enough to go, kept: `remediator audit export` has not shipped them
    dry_run: bool = False
    by: str = "serve"
    incident_ids: list[str] = Field(default_factory=list, repr=False)


def prune(store: Store, older_than: timedelta, *, incidents: bool = False, key: bytes | None = None,
          dry_run: bool = False, now: datetime | None = None, by: str = "serve") -> PruneReport:
    """Remove what is older than `older_than` (see the module's docstring); audited in the name of `by`.
    `incidents`: the records too, the audit chain's shipped prefix signed with `key`. `dry_run`: only count."""
    if incidents and older_than < RECORDS_FLOOR:
        raise PayloadError(f"closed incidents and their audit events younger than {RECORDS_FLOOR.days} days are never "
                           f"pruned (asked: older than {older_than.total_seconds() / 3600:g}h); write --older-than "
                           f"{RECORDS_FLOOR.days}d or more")
    if incidents and key is None and not dry_run:
        raise ValueError("pruning records cuts the audit chain: a checkpoint key is needed")
    cutoff = (now or utcnow()) - older_than
    report = PruneReport(older_than=cutoff, dry_run=dry_run, by=by)
    closed = [s.value for s in FINAL_STATES]
    with store.write() as session:
        # compared as text: PostgreSQL's json type has no equality
        old_deliveries = select(Delivery.id).where(Delivery.ingested_at < cutoff,
                                                   cast(Delivery.body, Text) != json.dumps(PRUNED_BODY))
        report.delivery_bodies = len(session.execute(old_deliveries).all())
        done = or_(OutboxMessage.sent_at < cutoff, (OutboxMessage.dead.is_(True)) & (OutboxMessage.created_at < cutoff))
        report.notifications = len(session.execute(select(OutboxMessage.id).where(done)).all())
        dirs = [Path(d) for d in session.execute(
            select(Run.artifact_dir).join(Incident, Incident.id == Run.incident_id)
            .where(Incident.state.in_(closed), Incident.closed_at < cutoff, Run.artifact_dir != "")).scalars()]
        dirs = [d for d in dirs if d.is_dir()]
        report.run_dirs = len(dirs)
        old_incidents = select(Incident.id).where(Incident.state.in_(closed), Incident.closed_at < cutoff)
        if incidents:
            report.incident_ids = list(session.execute(old_incidents.order_by(Incident.id)).scalars())
            report.incidents = len(report.incident_ids)
        if dry_run:
            if incidents:
                _, report.audit_events, report.audit_unshipped = _audit_prefix(session, cutoff, old_incidents)
            return report
        session.execute(update(Delivery).where(Delivery.id.in_(old_deliveries.scalar_subquery())).values(body=PRUNED_BODY))
        session.execute(delete(OutboxMessage).where(done))
        if incidents and key is not None:
            _prune_records(session, old_incidents, cutoff)
            upto, report.audit_events, report.audit_unshipped = _audit_prefix(session, cutoff, None)
            if upto:
                checkpoint.cut(session, upto, key)
        audit.append(session, "store.pruned", report.model_dump(mode="json"))
    for d in dirs:   # after the commit: a prune that failed in the store leaves the files
        shutil.rmtree(d, ignore_errors=True)
    return report


def _prune_records(session: Session, old_incidents, cutoff: datetime) -> None:
    """Closed incidents older than the cutoff and every row of theirs, then deliveries left with no alert."""
    ids = old_incidents.scalar_subquery()
    session.execute(delete(ApprovalVote).where(ApprovalVote.approval_id.in_(
        select(Approval.id).where(Approval.incident_id.in_(ids)).scalar_subquery())))
    for model in (Approval, Run, AlertRow, OutboxMessage):
        session.execute(delete(model).where(model.incident_id.in_(ids)))
    session.execute(delete(Incident).where(Incident.id.in_(ids)))
    session.execute(delete(Delivery).where(Delivery.ingested_at < cutoff,
                                           ~exists().where(AlertRow.delivery_id == Delivery.id)))


def _audit_prefix(session: Session, cutoff: datetime, leaving) -> tuple[int, int, int]:
    """(the last seq that may go, how many events that is, how many more would but were not shipped): older than
    the cutoff, before the first event of any incident that stays (`leaving`: the incidents a dry run would remove,
    still present), and shipped by `remediator audit export`."""
    at = cutoff.replace(tzinfo=UTC).isoformat(timespec="microseconds")
    upto = session.execute(select(func.max(AuditEvent.seq)).where(AuditEvent.at < at)).scalar() or 0
    staying = select(Incident.id)
    if leaving is not None:
        staying = staying.where(Incident.id.not_in(leaving.scalar_subquery()))
    first_kept = session.execute(select(func.min(AuditEvent.seq)).where(
        AuditEvent.incident_id.in_(staying.scalar_subquery()))).scalar()
    if first_kept is not None:
        upto = min(upto, first_kept - 1)
    shipped = audit.shipped_upto(session)
    unshipped = 0
    if upto > shipped:
        unshipped = session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.seq > shipped, AuditEvent.seq <= upto)).scalar_one()
        upto = shipped
    n = session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq <= upto)).scalar_one()
    return (upto, n, unshipped) if n else (0, 0, unshipped)
