"""The circuit breaker: after repeated failed remediations, automatic runs pause until an admin resets it.

Three kinds of scope: one entry (`entry:<id>`, after `breaker_entry_failures` consecutive failures of
that entry, or when more than `breaker_failure_percent` of its last ended remediations across the fleet, at least
`breaker_failure_min`, failed: failures that alternate with fixes never count as consecutive), everything
(`global`, after `breaker_global_failures` consecutive failures of any entry), all counted over `breaker_window_s`;
and what the boundary learned (`learned:<entry>|<group>|<alertname>`: after `learn_failures` failed or unverified
runs of that entry for that alert on hosts of that inventory group within `learn_window_s`, consecutive or not).
Counts start again at a scope's last reset. A
remediation failed when its real run failed or its fix did not verify (the incident ended failed or
escalated after an apply). While a scope is open, a verdict of `allow` becomes `approve`: a person looks
at each dry run; it only ever tightens. Opening is audited and notified; only an admin resets
(`remediator breaker reset`, the API); `remediator policy status` shows what was learned.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.errors import NotFound
from remediator.engine.model.roles import Actor, Role
from remediator.engine.model.states import IncidentState, NotifyEvent, RunMode
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Notice, OnClose
from remediator.engine.store.tables import BreakerRow, Incident, Run, utcnow

__all__ = ["Trips", "GLOBAL", "LEARNED", "scope_of", "learned_scopes", "BreakerView", "tripped", "record_outcome", "on_close", "open_scope",
           "status", "reset"]

GLOBAL = "global"
LEARNED = "learned:"
_FAILED = {IncidentState.FAILED.value, IncidentState.ESCALATED.value}
_ENDED = {IncidentState.RESOLVED, IncidentState.FAILED, IncidentState.ESCALATED}   # what a remediation's end is


@dataclass(frozen=True)
class Trips:
    """What trips a breaker and what the boundary learns (Settings.section(Trips)): the operator's keys, frozen."""

    breaker_entry_failures: int
    breaker_global_failures: int
    breaker_failure_min: int
    breaker_failure_percent: float
    breaker_window_s: int
    learn_failures: int
    learn_window_s: int


def scope_of(entry: str) -> str:
    return f"entry:{entry}"


def learned_scopes(entry: str, groups: list[str], alertname: str) -> list[str]:
    """The learned scopes an action falls in: one per inventory group of its host (the name in any case: a sender
    who spells it `webappflaky` is still in `WebappFlaky`'s scope)."""
    return [f"{LEARNED}{entry}|{group}|{alertname.casefold()}" for group in groups]


class BreakerView(BaseModel):
    scope: str
    open: bool
    opened_at: datetime | None
    reason: str
    reset_by: str
    reset_at: datetime | None


def tripped(session: Session, entry: str, learned: list[str] | tuple[str, ...] = ()) -> BreakerRow | None:
    """The open breaker that pauses automatic runs of `entry` (a learned scope, its own, else the global one)."""
    # in any case: scopes written before names were casefolded keep their spelling
    rows = session.execute(select(BreakerRow).where(
        func.lower(BreakerRow.scope).in_([s.lower() for s in (scope_of(entry), GLOBAL, *learned)]),
        BreakerRow.open.is_(True))).scalars().all()
    return min(rows, key=lambda r: (r.scope == GLOBAL, r.scope.startswith("entry:")), default=None)


def _consecutive_failures(session: Session, trips: Trips, entry: str | None, since: datetime) -> int:
    applied = select(Run.incident_id).where(Run.mode == RunMode.APPLY)
    q = (select(Incident.state).where(Incident.id.in_(applied), Incident.closed_at.is_not(None), Incident.closed_at >= since,
                                      Incident.state.in_([*_FAILED, IncidentState.RESOLVED.value]))
         .order_by(Incident.closed_at.desc()).limit(max(trips.breaker_entry_failures, trips.breaker_global_failures)))
    if entry is not None:
        q = q.where(Incident.entry == entry)
    n = 0
    for (state,) in session.execute(q):
        if state not in _FAILED:
            break
        n += 1
    return n


def _failure_share(session: Session, trips: Trips, entry: str, since: datetime) -> tuple[int, int] | None:
    """(failed, ended) remediations of `entry` on any host since `since`, when the failed share passes the setting."""
    applied = select(Run.incident_id).where(Run.mode == RunMode.APPLY)
    states = session.execute(select(Incident.state).where(
        Incident.id.in_(applied), Incident.entry == entry, Incident.closed_at.is_not(None), Incident.closed_at >= since,
        Incident.state.in_([*_FAILED, IncidentState.RESOLVED.value]))).scalars().all()
    failed, ended = sum(s in _FAILED for s in states), len(states)
    passed = ended >= trips.breaker_failure_min and failed * 100 > trips.breaker_failure_percent * ended
    return (failed, ended) if passed else None


def _learned_failures(session: Session, inc: Incident, hosts: list[str], since: datetime) -> int:
    """Failed or unverified real runs of this entry for this alert on these hosts since `since`."""
    applied = select(Run.incident_id).where(Run.mode == RunMode.APPLY)
    names = session.execute(select(Incident.alertname).where(
        Incident.id.in_(applied), Incident.entry == inc.entry, Incident.host.in_(hosts),
        Incident.state.in_(list(_FAILED)), Incident.closed_at >= since)).scalars()
    return sum(1 for name in names if name.casefold() == inc.alertname.casefold())


def record_outcome(session: Session, trips: Trips, inc: Incident,
                   groups: dict[str, list[str]] | None = None) -> list[str]:
    """After a remediation ended (in the caller's transaction): open the scopes it trips; returns them.

    `groups`: the host's inventory groups, each with its hosts (what the boundary learns per)."""
    if inc.entry is None:
        return []
    opened: list[str] = []
    for group, hosts in (groups or {}).items():
        scope = learned_scopes(inc.entry, [group], inc.alertname)[0]
        row = session.get(BreakerRow, scope)
        if row is not None and row.open:
            continue
        window_start = utcnow() - timedelta(seconds=trips.learn_window_s)
        since = max(window_start, row.reset_at) if row is not None and row.reset_at else window_start
        failures = _learned_failures(session, inc, hosts, since)
        if failures < trips.learn_failures:
            continue
        reason = (f"learned: {failures} failed or unverified {inc.entry} runs for {inc.alertname} on hosts of group "
                  f"{group} within {trips.learn_window_s // 3600} h (the last: incident {inc.id} on {inc.host}); "
                  "there, each run needs a person until an admin resets it")
        _open(session, row, scope, reason, failures, inc)
        opened.append(scope)
    window_start = utcnow() - timedelta(seconds=trips.breaker_window_s)
    for scope, entry, limit in ((scope_of(inc.entry), inc.entry, trips.breaker_entry_failures),
                                (GLOBAL, None, trips.breaker_global_failures)):
        row = session.get(BreakerRow, scope)
        if row is not None and row.open:
            continue
        since = max(window_start, row.reset_at) if row is not None and row.reset_at else window_start
        failures = _consecutive_failures(session, trips, entry, since)
        what = inc.entry if entry else "remediations of any entry"
        if failures >= limit:
            reason = (f"{failures} consecutive failed {what} within {trips.breaker_window_s} s "
                      f"(the last: incident {inc.id} on {inc.host}); automatic runs pause, each needs a person")
        elif entry is not None and (share := _failure_share(session, trips, entry, since)):
            failures, ended = share
            reason = (f"{failures} of the last {ended} {what} remediations across the fleet failed within "
                      f"{trips.breaker_window_s} s (more than {trips.breaker_failure_percent:g} %; the last: "
                      f"incident {inc.id} on {inc.host}); it is approve-only everywhere until an admin resets it")
        else:
            continue
        _open(session, row, scope, reason, failures, inc)
        opened.append(scope)
    return opened


def on_close(trips: Trips, inventory: Inventory | None, notice: Notice | None,
             opened: Callable[[str], None] | None = None) -> OnClose:
    """The lifecycle's hook (remediator/engine/store/lifecycle.py): when a remediation that made a real run ends
    (resolved, failed, escalated), count it and open what it trips, per entry and fleet-wide, and per the host's
    inventory groups where the inventory is known; each opened scope is told once (deduplicated by the scope) and
    handed to `opened` (the metrics)."""
    def hook(session: Session, inc: Incident, state: IncidentState, seconds_open: float) -> None:
        if state not in _ENDED or not inc.entry or not session.execute(
                select(Run.id).where(Run.incident_id == inc.id, Run.mode == RunMode.APPLY).limit(1)).first():
            return
        for scope in record_outcome(session, trips, inc, inventory.groups_of(inc.host) if inventory else {}):
            if opened is not None:
                opened(scope)
            row = session.get(BreakerRow, scope)
            if notice is not None:
                notice(session, inc, NotifyEvent.BREAKER_OPEN, row.reason if row else scope, dedup_key=f"breaker:{scope}")
    return hook


def open_scope(session: Session, scope: str, reason: str, inc: Incident) -> None:
    """Open a scope for another cause than failures (the storm brake, remediator/engine/decide/blast.py)."""
    _open(session, session.get(BreakerRow, scope), scope, reason, 0, inc)


def _open(session: Session, row: BreakerRow | None, scope: str, reason: str, failures: int, inc: Incident) -> None:
    if row is None:
        row = BreakerRow(scope=scope)
        session.add(row)
    row.open, row.opened_at, row.reason = True, utcnow(), reason
    audit.append(session, "breaker.opened", {"scope": scope, "failures": failures, "reason": reason}, inc.id)


def status(store: Store) -> list[BreakerView]:
    with store.read() as session:
        return [BreakerView.model_validate(r, from_attributes=True)
                for r in session.execute(select(BreakerRow).order_by(BreakerRow.scope)).scalars()]


def reset(store: Store, who: Actor, scope: str) -> BreakerView:
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
