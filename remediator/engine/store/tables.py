"""The store's tables: one SQLAlchemy class per table (the schema itself is owned by Alembic:
remediator/engine/store/migrations; a change here goes with a migration there)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

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
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from remediator.engine.errors import NotFound
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Report

__all__ = ["incident_row", "utcnow", "core", "Base", "InboxRow", "Delivery", "AlertRow", "Incident", "Run", "AuditEvent",
           "AuditHead", "OutboxMessage", "Approval", "ApprovalVote", "Approver", "AuditCheckpoint", "BreakerRow",
           "UiSession"]


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


def core(model: type[Base]) -> Table:
    """A mapped class's Core table: for bulk inserts of thousands of rows that want no ORM objects back."""
    return cast(Table, model.__table__)


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
    """One alert notification; (fingerprint, starts_at, status, owner) is unique, so a resend is a no-op. The owner is
    the sender that posted it (for alerts fetched for a truncated delivery: that delivery's sender)."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("fingerprint", "starts_at", "status", "owner", name="uq_alert_identity"),)
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
    owner: Mapped[str] = mapped_column(String(64), default="", server_default="")


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
    slack_user: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)   # their Slack user id (U…)


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


class SeenSignature(Base):
    """A signed webhook's HMAC, kept until its timestamp leaves the window: a replay to any replica, or after a
    restart, finds it here (remediator/engine/people/signing.py). In the inbox's store, beside the acknowledgements."""

    __tablename__ = "seen_signatures"
    signature: Mapped[str] = mapped_column(String(80), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
