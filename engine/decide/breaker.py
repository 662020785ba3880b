"""The circuit breaker: after repeated failed remediations, automatic runs pause until an admin resets it.

Two scopes: one entry (`entry:<id>`, after `breaker_entry_failures` consecutive failures of that
entry) and everything (`global`, after `breaker_global_failures` consecutive failures of any
entry), counted over `breaker_window_s` and since the scope's last reset. A remediation failed when
its real run failed or its fix did not verify (the incident ended failed or escalated after an
apply). While a scope is open, a verdict of `allow` becomes `approve`: a person looks at each dry
run. Opening is audited and notified; only an admin resets (`remediator breaker reset`, the API).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import NotFound
from engine.model.states import IncidentState, RunMode
from engine.people.identities import Identity, Role
from engine.settings import Settings
from engine.store import audit
from engine.store.db import BreakerRow, Incident, Run, Store, utcnow

__all__ = ["GLOBAL", "scope_of", "BreakerView", "tripped", "record_outcome", "status", "reset"]

GLOBAL = "global"
_FAILED = {IncidentState.FAILED.value, IncidentState.ESCALATED.value}


def scope_of(entry: str) -> str:
    return f"entry:{entry}"


class BreakerView(BaseModel):
    scope: str
    open: bool
    opened_at: datetime | None
    reason: str
    reset_by: str
    reset_at: datetime | None


def tripped(session: Session, entry: str) -> BreakerRow | None:
    """The open breaker that pauses automatic runs of `entry` (its own, else the global one), if any."""
    rows = session.execute(select(BreakerRow).where(BreakerRow.scope.in_([scope_of(entry), GLOBAL]),
                                                    BreakerRow.open.is_(True))).scalars().all()
    return min(rows, key=lambda r: r.scope == GLOBAL, default=None)


def _consecutive_failures(session: Session, settings: Settings, entry: str | None, since: datetime) -> int:
    applied = select(Run.incident_id).where(Run.mode == RunMode.APPLY)
    q = (select(Incident.state).where(Incident.id.in_(applied), Incident.closed_at.is_not(None), Incident.closed_at >= since,
                                      Incident.state.in_([*_FAILED, IncidentState.RESOLVED.value]))
         .order_by(Incident.closed_at.desc()).limit(max(settings.breaker_entry_failures, settings.breaker_global_failures)))
    if entry is not None:
        q = q.where(Incident.entry == entry)
    n = 0
    for (state,) in session.execute(q):
        if state not in _FAILED:
            break
        n += 1
    return n


def record_outcome(session: Session, settings: Settings, inc: Incident) -> list[str]:
    """After a remediation ended (in the caller's transaction): open the scopes it trips; returns them."""
    if inc.entry is None:
        return []
    opened = []
    window_start = utcnow() - timedelta(seconds=settings.breaker_window_s)
    for scope, entry, limit in ((scope_of(inc.entry), inc.entry, settings.breaker_entry_failures),
                                (GLOBAL, None, settings.breaker_global_failures)):
        row = session.get(BreakerRow, scope)
        if row is not None and row.open:
            continue
        since = max(window_start, row.reset_at) if row is not None and row.reset_at else window_start
        failures = _consecutive_failures(session, settings, entry, since)
        if failures < limit:
            continue
        what = inc.entry if entry else "remediations of any entry"
        reason = (f"{failures} consecutive failed {what} within {settings.breaker_window_s} s "
                  f"(the last: incident {inc.id} on {inc.host}); automatic runs pause, each needs a person")
        if row is None:
            row = BreakerRow(scope=scope)
            session.add(row)
        row.open, row.opened_at, row.reason = True, utcnow(), reason
        audit.append(session, "breaker.opened", {"scope": scope, "failures": failures, "reason": reason}, inc.id)
        opened.append(scope)
    return opened


def status(store: Store) -> list[BreakerView]:
    with store.read() as session:
        return [BreakerView.model_validate(r, from_attributes=True)
                for r in session.execute(select(BreakerRow).order_by(BreakerRow.scope)).scalars()]


def reset(store: Store, who: Identity, scope: str) -> BreakerView:
    """Close a scope (admin only); its failure count starts again from now."""
    who.require(Role.ADMIN, "reset the circuit breaker")
    with store.write() as session:
        row = session.get(BreakerRow, scope)
        if row is None or not row.open:
            raise NotFound(f"no open breaker {scope!r}; open ones: "
                           + (", ".join(r.scope for r in session.execute(
                               select(BreakerRow).where(BreakerRow.open.is_(True))).scalars()) or "none"))
        row.open, row.reset_by, row.reset_at = False, who.name, utcnow()
        audit.append(session, "breaker.reset", {"scope": scope, "by": who.name})
        return BreakerView.model_validate(row, from_attributes=True)
