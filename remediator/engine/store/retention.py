"""Retention: what remediator keeps grows with every alert, so old bulk goes after `retention_days`.

Pruned: the bodies of deliveries taken in long ago (the alerts stay, as rows), notifications sent or given up,
and the run artifacts of closed incidents. Kept: incidents, alerts, runs and the audit chain (small, and what
the story of an incident is made of), so `incidents show` and `audit verify` still work after a prune.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Text, cast, delete, or_, select, update

from remediator.engine.model.states import FINAL_STATES
from remediator.engine.store import audit
from remediator.engine.store.db import Delivery, Incident, OutboxMessage, Run, Store, utcnow

__all__ = ["PruneReport", "prune"]

PRUNED_BODY = {"pruned": True}


class PruneReport(BaseModel):
    older_than: datetime
    delivery_bodies: int = 0
    notifications: int = 0
    run_dirs: int = 0
    dry_run: bool = False


def prune(store: Store, older_than: timedelta, *, dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Remove what is older than `older_than` (see the module's docstring); audited. `dry_run`: only count."""
    cutoff = (now or utcnow()) - older_than
    report = PruneReport(older_than=cutoff, dry_run=dry_run)
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
        if dry_run:
            return report
        session.execute(update(Delivery).where(Delivery.id.in_(old_deliveries.scalar_subquery())).values(body=PRUNED_BODY))
        session.execute(delete(OutboxMessage).where(done))
        audit.append(session, "store.pruned", report.model_dump(mode="json"))
    for d in dirs:   # after the commit: a prune that failed in the store leaves the files
        shutil.rmtree(d, ignore_errors=True)
    return report
