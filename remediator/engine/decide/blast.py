"""Blast radius: how much of the fleet remediator may touch at once, and when a storm means a person decides.

Scopes come from the inventory: its groups, and among them the regions (groups named `region_*`). Every rule is read
inside a transaction that holds the audit head (claims and real runs take turns across replicas), so two replicas
cannot both pass a cap that has room for one.

- Budget and caps, at the claim (`busy_hosts`): at most `budget_per_group` hosts of one group and `cap_per_region`
  of one region being worked at once, and `cap_global` in all (0: only the workers bound it).
- Storm brake, at the claim (`brake`): when the alerting hosts of a group exceed max(`brake_hosts`, `brake_percent`
  of its hosts), or one alertname fires in `brake_regions` regions or more within `brake_window_s` (this incident's,
  and elsewhere those whose evidence showed the fault: planned), the breaker scope
  `brake:<group>` / `brake:alert:<alertname>` opens (audited, paged once): in it every action waits for a person
  until an admin resets it (`remediator breaker reset`); judge() reads it through the breaker like any scope.
- Waves and the entry cap, right before a real run (`hold`): the same entry does not run in a second region until
  its runs in the others have verified and `wave_bake_s` has passed, and at most `cap_per_entry` real runs of one
  entry are in flight; the incident waits (worked again after `hold_s`). When the entry's last run in another
  region did not verify, a person decides (`unverified_elsewhere`, read with policy right before the real run).
  `wave_window_s` 0 turns waves off.
- One region per action (`target_problem`): an empty or multi-region target set runs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.decide import breaker
from remediator.engine.model.states import FINAL_STATES, HELD_STATES, IncidentState
from remediator.engine.store.leases import Lease
from remediator.engine.store.tables import BreakerRow, Incident, Run, utcnow

__all__ = ["Limits", "REGION", "BRAKE", "region_of", "brake_scopes", "busy_hosts", "waiting", "brake", "hold", "unverified_elsewhere",
           "target_problem"]

@dataclass(frozen=True)
class Limits:
    """The blast-radius settings this module reads (Settings.section(Limits)): the operator's flat keys, frozen."""

    budget_per_group: int
    cap_per_region: int
    cap_global: int
    cap_per_entry: int
    brake_hosts: int
    brake_percent: float
    brake_regions: int
    brake_window_s: int
    wave_window_s: int
    wave_bake_s: int


REGION = "region_"
BRAKE = "brake:"
_IN_FLIGHT = [IncidentState.EXECUTING.value, IncidentState.VERIFYING.value]


def region_of(inventory: Inventory, host: str | None) -> str:
    """The host's region (its first `region_*` group), '' when it has none."""
    return next((g for g in inventory.hosts.get(host or "", []) if g.startswith(REGION)), "")


def brake_scopes(groups: list[str], alertname: str) -> list[str]:
    """The brake scopes an action on a host of these groups, for this alert, falls in."""
    return [f"{BRAKE}{g}" for g in groups] + [f"{BRAKE}alert:{alertname.casefold()}"]   # the name in any case


def _members(inventory: Inventory) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for host, groups in inventory.hosts.items():
        for g in groups:
            out.setdefault(g, set()).add(host)
    return out


def _working(session: Session) -> set[str]:
    """Hosts being worked on now: leased, or their incident held (a dead replica's, until it is taken over)."""
    working = set(session.execute(select(Lease.key).where(Lease.expires_at > utcnow())).scalars())
    return working | {h for h in session.execute(select(Incident.host).where(
        Incident.state.in_([s.value for s in HELD_STATES]))).scalars() if h}


def _full(limits: Limits, inventory: Inventory, working: set[str]) -> list[tuple[str, set[str], str]]:
    """The groups whose budget (or regions whose cap) the hosts being worked on fill: (group, its hosts, why)."""
    out = []
    for group, hosts in _members(inventory).items():
        region = group.startswith(REGION)
        limit = limits.cap_per_region if region else limits.budget_per_group
        if limit and len(hosts & working) >= limit:
            out.append((group, hosts, f"{len(hosts & working)} hosts of {group} are being worked on "
                                      f"({'cap_per_region' if region else 'budget_per_group'} {limit})"))
    return out


def busy_hosts(session: Session, limits: Limits, inventory: Inventory) -> set[str] | None:
    """Hosts the budget and the caps leave no room for now; None: the global cap is reached (claim nothing)."""
    working = _working(session)
    if limits.cap_global and len(working) >= limits.cap_global:
        return None
    return {h for _group, hosts, _why in _full(limits, inventory, working) for h in hosts}


def waiting(session: Session, limits: Limits, inventory: Inventory, host: str | None) -> str:
    """Why the claim passes over this host's incident now ('' when the budget and the caps leave it room)."""
    working = _working(session)
    if host in working:
        return f"{host} is being worked on by another incident (one at a time per host)"
    if limits.cap_global and len(working) >= limits.cap_global:
        return f"{len(working)} hosts are being worked on (cap_global {limits.cap_global})"
    return next((why for _group, hosts, why in _full(limits, inventory, working) if host in hosts), "")


def brake(session: Session, limits: Limits, inventory: Inventory, inc: Incident) -> list[tuple[str, str]]:
    """Open the brake scopes this incident's storm calls for (in the claim's transaction); (scope, why) opened."""
    # open, or reset by an admin within the window (a person judged this storm: it does not brake again at once)
    quiet_since = utcnow() - timedelta(seconds=limits.brake_window_s)
    open_ = {r.scope for r in session.execute(select(BreakerRow).where(BreakerRow.scope.like(f"{BRAKE}%"))).scalars()
             if r.open or (r.reset_at is not None and r.reset_at > quiet_since)}
    groups = inventory.hosts.get(inc.host or "", [])
    wanted: list[tuple[str, str]] = []
    alerting = set(session.execute(select(Incident.host).where(
        Incident.state.not_in([s.value for s in FINAL_STATES]), Incident.host.is_not(None)).distinct()).scalars())
    members = _members(inventory)
    for g in groups:
        hosts = members.get(g, set())
        limit = max(limits.brake_hosts, len(hosts) * limits.brake_percent / 100)
        if f"{BRAKE}{g}" not in open_ and len(hosts & alerting) > limit:
            wanted.append((f"{BRAKE}{g}", f"storm brake: {len(hosts & alerting)} of the {len(hosts)} hosts of {g} are "
                           f"alerting (more than max({limits.brake_hosts}, {limits.brake_percent:g} %)); every "
                           "action there waits for a person until an admin resets it"))
    since = utcnow() - timedelta(seconds=limits.brake_window_s)
    scope = f"{BRAKE}alert:{inc.alertname.casefold()}"
    if scope not in {s.lower() for s in open_}:
        # Elsewhere, only incidents whose evidence showed the fault (planned: their gate read it on the host) count:
        # alerts anyone can post on healthy hosts in two regions no longer turn that alert's automation off.
        firing = [h for h, name in session.execute(select(Incident.host, Incident.alertname).where(
            Incident.created_at >= since, Incident.entry.is_not(None), Incident.id != inc.id).distinct())
            if name.casefold() == inc.alertname.casefold()] + [inc.host]
        regions = {region_of(inventory, h) for h in firing} - {""}
        if len(regions) >= limits.brake_regions:
            wanted.append((scope, f"storm brake: {inc.alertname} fires in {len(regions)} regions ({', '.join(sorted(regions))}) "
                           f"within {limits.brake_window_s} s; every such action waits for a person until an admin "
                           "resets it"))
    for scope, why in wanted:
        breaker.open_scope(session, scope, why, inc)
    return wanted


def _elsewhere(session: Session, limits: Limits, inventory: Inventory, entry: str, hosts: list[str]
               ) -> tuple[set[str], list[tuple[set[str], str, object]]]:
    """This action's regions, and the entry's recent real runs in other regions: (their regions, state, closed_at)."""
    here = {region_of(inventory, h) for h in hosts}
    if not limits.wave_window_s:
        return here, []
    since = utcnow() - timedelta(seconds=limits.wave_window_s)
    rows = session.execute(select(Run.hosts, Incident.state, Incident.closed_at).join(Incident, Incident.id == Run.incident_id)
                           .where(Run.entry == entry, Run.mode == "apply", Run.started_at >= since)
                           .order_by(Run.started_at)).all()
    out = [({region_of(inventory, h) for h in run_hosts} - here - {""}, state, closed_at) for run_hosts, state, closed_at in rows]
    return here, [r for r in out if r[0]]


def hold(session: Session, limits: Limits, inventory: Inventory, entry: str, hosts: list[str]) -> str:
    """Why a real run of `entry` on `hosts` must wait now ('' when it may go): the entry cap, or the wave rule (the
    entry in flight in another region, or verified there less than `wave_bake_s` ago)."""
    flying = session.execute(select(func.count()).select_from(Incident).where(
        Incident.entry == entry, Incident.state.in_(_IN_FLIGHT))).scalar() or 0
    if limits.cap_per_entry and flying >= limits.cap_per_entry:
        return f"{flying} real runs of {entry} are in flight (cap_per_entry {limits.cap_per_entry})"
    here, runs = _elsewhere(session, limits, inventory, entry, hosts)
    baked_by = utcnow() - timedelta(seconds=limits.wave_bake_s)
    mine = ", ".join(sorted(here - {""})) or "this host"
    if limits.wave_window_s:
        # An incident moved to executing has no run row yet (it is written after this transaction): two workers a
        # moment apart would each find no run elsewhere. The incident's own state says it is in flight.
        moving = session.execute(select(Incident.host).where(Incident.entry == entry, Incident.state.in_(_IN_FLIGHT))
                                 ).scalars().all()
        there = {region_of(inventory, h) for h in moving if h} - here - {""}
        if there:
            return f"wave: {entry} is running in {', '.join(sorted(there))} and has not verified yet; {mine} waits"
    for there, state, closed_at in runs:
        if state in _IN_FLIGHT:
            return f"wave: {entry} is running in {', '.join(sorted(there))} and has not verified yet; {mine} waits"
        if state == IncidentState.RESOLVED and isinstance(closed_at, datetime) and closed_at > baked_by:
            return (f"wave: {entry} verified in {', '.join(sorted(there))} at {closed_at:%H:%M:%S}; {mine} waits for "
                    f"its bake time ({limits.wave_bake_s} s)")
    return ""


def unverified_elsewhere(session: Session, limits: Limits, inventory: Inventory, entry: str, hosts: list[str]
                         ) -> str:
    """Why a person decides this real run ('' when nothing says so): the entry's last run in another region ended
    without verifying (failed, cut off, escalated), so the wave does not move on by itself."""
    _here, runs = _elsewhere(session, limits, inventory, entry, hosts)
    ended = [(there, state) for there, state, _ in runs if state not in _IN_FLIGHT]
    if ended and ended[-1][1] != IncidentState.RESOLVED:
        there, state = ended[-1]
        return (f"wave: the last {entry} run in {', '.join(sorted(there))} did not verify (it ended {state}); a "
                "person decides whether it runs in another region")
    return ""


def target_problem(inventory: Inventory, hosts: list[str]) -> str:
    """Why this target set may not run at all ('' when it may): none, or hosts in more than one region."""
    if not hosts:
        return "the action names no host: nothing runs"
    regions = {region_of(inventory, h) for h in hosts}
    if len(regions) > 1:
        return f"the action spans regions ({', '.join(sorted(r or 'none' for r in regions))}): nothing runs"
    return ""
