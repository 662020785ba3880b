"""The store: SQLAlchemy 2 over SQLite (WAL, the embedded default) or PostgreSQL.

Writes go through `Store.write()`: one transaction, serialized in this process, and on SQLite
opened with BEGIN IMMEDIATE so a transaction that reads then writes never deadlocks on upgrade.
Reads go through `Store.read()`, which on SQLite takes no lock at all (WAL), so a reader never waits for a
writer in another process (the ingester's) nor holds one up.
The schema is owned by Alembic (remediator/engine/store/migrations); `Store.migrate()` brings it to head.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.exc import InternalError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from remediator.engine.errors import ConfigError, NotFound, StoreUnavailable
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Report

if TYPE_CHECKING:
    from remediator.engine.settings import Settings

__all__ = ["incident_row", "utcnow", "Base", "InboxRow",
           "Delivery", "AlertRow", "Incident", "Run", "AuditEvent", "AuditHead", "OutboxMessage",
           "Approval", "ApprovalVote", "Approver", "AuditCheckpoint", "BreakerRow", "Store", "utcnow"]


class ModelJSON(TypeDecorator):
    """A JSON column that holds one pydantic model: written as its JSON, read back as the model (parsed once, here)."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[BaseModel]):
        super().__init__()
        self.model = model

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return (value if isinstance(value, self.model) else self.model.model_validate(value)).model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else self.model.model_validate(value)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def incident_row(session: Session, incident_id: str) -> Incident:
    """The incident a worker holds: it exists (NotFound otherwise, a bug)."""
    row = session.get(Incident, incident_id)
    if row is None:
        raise NotFound(f"no incident {incident_id!r}")
    return row


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Delivery(Base):
    """One webhook request, as received: acknowledged once stored, then taken into incidents (ingested)."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    group_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    alerts_count: Mapped[int] = mapped_column(Integer)
    new_alerts: Mapped[int] = mapped_column(Integer, default=0)
    truncated: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    ingested_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)   # None: acknowledged, not yet taken in
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)                 # new, duplicates, incidents, escalated
    sender: Mapped[str | None] = mapped_column(String(64))                       # the service token that posted it


class InboxRow(Base):
    """A webhook acknowledged and not yet moved into `deliveries`: all the acknowledgement writes. Its id is the
    delivery's for good. On SQLite it lives in a database file of its own (remediator/engine/intake/inbox.py: `Inbox`), so an
    acknowledgement never waits for the ingester's transactions in the main one."""

    __tablename__ = "inbox"
    __table_args__ = {"sqlite_autoincrement": True}   # ids never reused, even once the inbox is empty
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    group_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    alerts_count: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    sender: Mapped[str | None] = mapped_column(String(64))


class AlertRow(Base):
    """One alert notification; (fingerprint, starts_at, status) is unique, so a resend is a no-op."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("fingerprint", "starts_at", "status", name="uq_alert_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    alertname: Mapped[str] = mapped_column(String(256))
    severity: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON)
    generator_url: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_queue", "state", "priority", "created_at"),
                      Index("ix_incidents_sender_created", "sender", "created_at"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    correlation_key: Mapped[str] = mapped_column(Text, index=True)
    alertname: Mapped[str] = mapped_column(String(256))
    host: Mapped[str | None] = mapped_column(String(256), index=True)
    severity: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), index=True)
    firing: Mapped[bool] = mapped_column(Boolean, default=True)
    sender: Mapped[str | None] = mapped_column(String(64))     # the service token whose alert opened it
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    proposal: Mapped[ActionProposal | None] = mapped_column(ModelJSON(ActionProposal))
    decision: Mapped[PolicyDecision | None] = mapped_column(ModelJSON(PolicyDecision))
    preview: Mapped[Preview | None] = mapped_column(ModelJSON(Preview))
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    entry: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    truncated: Mapped[int] = mapped_column(Integer, default=0)
    generator_url: Mapped[str] = mapped_column(Text, default="")
    transcript: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # the LLM planner's conversation
    interrupted: Mapped[str] = mapped_column(String(16), default="")   # apply | verify: a restart cut that step off
    report: Mapped[Report | None] = mapped_column(ModelJSON(Report))   # a Level 2 diagnosis (remediator/engine/decide/reports.py)
    not_before: Mapped[datetime | None] = mapped_column(DateTime)   # held back (a wave, a cap): not claimed before


class Run(Base):
    """One ansible-runner run; its artifacts stay in artifact_dir (indexed here, not copied)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    ident: Mapped[str] = mapped_column(String(128))
    entry: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))   # diagnose | check | apply | verify
    hosts: Mapped[list[Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # a RunStatus, or running (apply: recorded before it starts) | interrupted
    rc: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    artifact_dir: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")


class AuditEvent(Base):
    """Append-only; each event carries the hash of the one before (see remediator/engine/store/audit.py)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[str] = mapped_column(String(40))
    incident_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head, one row: updating it serializes appenders on every backend."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """One row once a prefix of the chain was pruned: the last pruned event's seq and hash, signed
    (remediator/engine/store/checkpoint.py); the chain verifies on from it."""

    __tablename__ = "audit_checkpoint"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    events: Mapped[int] = mapped_column(Integer)       # pruned in all, over every prune
    at: Mapped[str] = mapped_column(String(40))
    signature: Mapped[str] = mapped_column(String(64))


class OutboxMessage(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[str | None] = mapped_column(String(32), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(32), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    dead: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    preview_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))   # pending | approved | rejected | expired | canceled
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    decided_by: Mapped[str] = mapped_column(String(128), default="")
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    comment: Mapped[str] = mapped_column(Text, default="")
    preview: Mapped[Preview | None] = mapped_column(ModelJSON(Preview))           # the dry run this request shows
    required: Mapped[int] = mapped_column(Integer, default=1)              # distinct approvers needed
    risk: Mapped[str] = mapped_column(String(16), default="")
    rules: Mapped[list[Any]] = mapped_column(JSON, default=list)           # the policy rules that asked
    reasons: Mapped[str] = mapped_column(Text, default="")
    supersedes: Mapped[str | None] = mapped_column(String(32))             # the request whose dry run drifted


class ApprovalVote(Base):
    """One person's decision on an approval request (high risk needs two distinct approvers)."""

    __tablename__ = "approval_votes"
    __table_args__ = (UniqueConstraint("approval_id", "approver", name="uq_vote_per_approver"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), index=True)
    approver: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))     # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    digest: Mapped[str] = mapped_column(String(64))       # the dry run they saw
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Approver(Base):
    """A person who may look at (viewer), decide (approver) or also manage approvers (admin).

    The token is `rmd_<token_id>_<secret>`; only an argon2 hash of the secret is kept."""

    __tablename__ = "approvers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_id: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)


class UiSession(Base):
    """A login to the approval pages, kept here so that logging out ends it (the cookie alone could be replayed).
    `id` is the sha256 of the session's secret, which only the browser holds."""

    __tablename__ = "ui_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    approver_id: Mapped[str] = mapped_column(ForeignKey("approvers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


class BreakerRow(Base):
    """A circuit-breaker scope (`entry:<id>` or `global`): open means automatic runs pause."""

    __tablename__ = "breakers"
    scope: Mapped[str] = mapped_column(String(160), primary_key=True)
    open: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    reset_by: Mapped[str] = mapped_column(String(64), default="")
    reset_at: Mapped[datetime | None] = mapped_column(DateTime)


class Store:
    """Engine, sessions and the single write path."""

    def __init__(self, url: str, sqlite_synchronous: str = "FULL", audit_sinks: list[Callable[[int, str], None]] | None = None):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                # The store holds alerts, evidence and approvers' hashes: the owner's alone. SQLite gives its
                # -wal and -shm files the database file's mode.
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            self._sqlite_setup(sqlite_synchronous)
        # audit_sinks: where each new head of the audit chain goes after its commit (remediator/engine/store/anchor.py)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info={"audit_sinks": audit_sinks or []})
        self._read_sessions = sessionmaker(self.engine.execution_options(remediator_read=True), expire_on_commit=False)
        self._write_lock = threading.RLock()

    def _sqlite_setup(self, synchronous: str) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None   # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a 2xx is only sent for what survives a
            # power cut. NORMAL trades the last commits on power loss (not on a crash) for speed.
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn):
            # A read takes no lock (WAL: readers never wait for the writer, nor it for them); a write takes the
            # write lock at its start, so it never fails to upgrade halfway.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("remediator_read") else "BEGIN IMMEDIATE")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from remediator.engine.store.migrations import upgrade
        upgrade(self.engine)

    def revisions(self) -> tuple[str | None, str]:
        """(the schema's Alembic revision, None when empty; the newest this remediator knows)."""
        from remediator.engine.store.migrations import revisions
        return revisions(self.engine)

    def prepare(self, migrate: bool) -> None:
        """Ready for use: migrated to the newest revision, or (migrate False: the operator migrates by hand)
        checked to be there already."""
        if migrate:
            self.migrate()
            return
        current, head = self.revisions()
        if current != head:
            raise ConfigError(f"the store is at revision {current or 'none (empty)'}, this remediator needs {head}: "
                              "run `remediator db upgrade` (migrate_on_start is false)")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only (on SQLite it takes no lock: writing in it is a bug); StoreUnavailable when the
        database does not answer."""
        try:
            with self._read_sessions() as session:
                yield session
        except (OperationalError, InternalError) as exc:
            raise StoreUnavailable(f"the store cannot be read now: {exc.orig}") from None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; StoreUnavailable when the database cannot take it."""
        with self._write_lock:
            try:
                with self._sessions() as session, session.begin():
                    yield session
            except (OperationalError, InternalError) as exc:   # locked, down, disk full, read-only (PostgreSQL: InternalError)
                raise StoreUnavailable(f"the store cannot take writes now: {exc.orig}") from None


def open_store(settings: Settings) -> Store:
    """The store the settings name, exporting its audit heads where they say (remediator/engine/store/anchor.py)."""
    from remediator.engine.store.anchor import sinks
    return Store(settings.db_url, settings.sqlite_synchronous, sinks(settings.audit_anchor_syslog, settings.audit_anchor_file))
