"""Who works what across replicas: a lease per host being remediated, and the pauses an operator set.

A worker's claim writes a `Lease` row keyed by the host in the same transaction that moves the incident out of the
queue, so two replicas can never hold one host (the primary key says no, whatever they read). The owner renews its
leases while it works and deletes them when the incident leaves the worker; a lease nobody renews expires, and then
its incident is an orphan that `take_over()` (remediator/engine/pipeline/worker.py) recovers as after a restart.
Every lease time is the database's (`db_now`), never a replica's own: a replica whose clock runs ahead would
otherwise see a live lease as expired and take its host over; a replica whose clock is off refuses to start.
A worker works an incident inside `fencing(owner, incident_id)`: every write transaction its thread flushes then
first checks that the incident's lease is still this owner's (the fencing check), so a worker that froze past its
lease and was taken over writes nothing (LeaseLost) instead of overwriting the new owner's work.
A `Pause` (`remediator pause [--scope GROUP]`) is read inside every claim.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, Text, delete, event, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from remediator.engine.errors import LeaseLost
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.tables import Base, utcnow

__all__ = ["Lease", "Pause", "ALL", "replica_name", "lease_key", "db_now", "clock_skew_s", "renew", "release",
           "live_incidents", "pauses", "pause", "resume", "holding", "fencing"]

#: the scope of a pause of everything
ALL = "*"


class Lease(Base):
    """A host being remediated by one replica's worker, until `expires_at` unless renewed."""

    __tablename__ = "leases"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)   # the host (or incident:<id> with no host)
    incident_id: Mapped[str] = mapped_column(String(32), index=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Pause(Base):
    """No new claims in this scope (an inventory group, or `*`) until it is resumed."""

    __tablename__ = "pauses"
    scope: Mapped[str] = mapped_column(String(256), primary_key=True)
    by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime)


def replica_name() -> str:
    """This process among the replicas: machine, pid and a nonce (a pid is reused after a restart)."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_key(host: str | None, incident_id: str) -> str:
    return host if host else f"incident:{incident_id}"


def db_now(session: Session) -> datetime:
    """Now on the database's clock (naive UTC, as the columns hold it): one clock for every replica. A SQLite store
    has one replica on one machine, whose clock it is."""
    if session.get_bind().dialect.name != "postgresql":
        return utcnow()
    return session.execute(text("SELECT now() AT TIME ZONE 'UTC'")).scalar_one()


def clock_skew_s(store: Store) -> float:
    """How far this machine's clock is from the database's, in seconds (0 on SQLite)."""
    with store.read() as session:
        return abs((utcnow() - db_now(session)).total_seconds())


_fence = threading.local()   # (owner, incident_id) while this thread works an incident


@contextmanager
def fencing(owner: str, incident_id: str) -> Iterator[None]:
    """While this thread works `incident_id`: each write it flushes checks the lease is still `owner`'s."""
    _fence.held = (owner, incident_id)
    try:
        yield
    finally:
        _fence.held = None


@event.listens_for(Session, "before_flush")
def _check_fence(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        _fenced(session)


@event.listens_for(Session, "do_orm_execute")
def _check_fence_of_statements(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:   # writes that bypass the flush
        _fenced(state.session)


def _fenced(session: Session) -> None:
    held = getattr(_fence, "held", None)
    if held is None:
        return
    owner, incident_id = held
    with session.no_autoflush:
        ours = session.execute(select(Lease.key).where(Lease.incident_id == incident_id, Lease.owner == owner)
                               .limit(1)).first()
    if ours is None:
        raise LeaseLost(f"incident {incident_id}: this replica's lease on it is gone (another replica took it "
                        "over); nothing more is written for it here")


def renew(store: Store, owner: str, ttl_s: float) -> set[str]:
    """Push the expiry of every lease `owner` holds; the incidents they are for (one taken over is not among them)."""
    with store.write() as session:
        until = db_now(session) + timedelta(seconds=ttl_s)
        session.execute(update(Lease).where(Lease.owner == owner).values(expires_at=until))
        return set(session.execute(select(Lease.incident_id).where(Lease.owner == owner)).scalars())


def release(store: Store, owner: str, incident_id: str) -> None:
    """The incident left this worker: its host is free for the next claim."""
    with store.write() as session:
        session.execute(delete(Lease).where(Lease.owner == owner, Lease.incident_id == incident_id))


def live_incidents(session: Session) -> set[str]:
    """Incidents a replica holds a lease on that has not expired."""
    return set(session.execute(select(Lease.incident_id).where(Lease.expires_at > db_now(session))).scalars())


def pauses(session: Session) -> list[Pause]:
    return list(session.execute(select(Pause).order_by(Pause.scope)).scalars())


def pause(store: Store, scope: str, by: str, reason: str) -> None:
    """Stop new claims in `scope` (every replica reads it at its next claim); a run in flight finishes."""
    with store.write() as session:
        row = session.get(Pause, scope) or Pause(scope=scope)
        row.by, row.reason, row.at = by[:64], reason, utcnow()
        session.add(row)
        audit.append(session, "claims.paused", {"scope": scope, "by": by, "reason": reason})


def resume(store: Store, scope: str, by: str) -> bool:
    """Claims in `scope` go on; False when it was not paused."""
    with store.write() as session:
        gone = session.get(Pause, scope)
        if gone is not None:
            session.delete(gone)
            audit.append(session, "claims.resumed", {"scope": scope, "by": by})
        return bool(gone)


def holding(session: Session, host: str | None, groups: list[str]) -> Pause | None:
    """The pause that holds back new work on this host (everything, the host itself, or a group of it), if any."""
    for p in pauses(session):
        if p.scope == ALL or p.scope == host or p.scope in groups:
            return p
    return None
