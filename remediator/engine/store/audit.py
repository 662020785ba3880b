"""The audit trail: append-only events, each carrying the hash of the one before.

hash = sha256(prev_hash + canonical JSON of (seq, at, incident_id, kind, data)). Editing, deleting
or reordering any event breaks the chain at that point, and `verify()` says where. After each commit
that appends, the new head goes to the store's anchor sinks (remediator/engine/store/anchor.py), so a tail cut off
with its head row is caught too (`verify(expect=...)`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Text, bindparam, cast, event, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from remediator.engine.store.db import Store
from remediator.engine.store.tables import AuditCheckpoint, AuditEvent, AuditHead, core

__all__ = ["append", "head", "lock", "verify", "export", "mark_shipped", "shipped_upto", "checkpoint_signature",
           "AuditReport", "GENESIS"]

GENESIS = "0" * 64
EXPORTED = "audit.exported"
log = logging.getLogger(__name__)


def _digest(prev_hash: str, seq: int, at: str, incident_id: str | None, kind: str, data_text: str) -> str:
    """The event's hash; `data_text` is its data's canonical JSON (`_canonical`). The body is the canonical JSON of
    [seq, at, incident_id, kind, data], put together around the data's text so that is encoded only once."""
    middle = json.dumps((at, incident_id, kind), separators=(",", ":"))[1:-1]   # one encoding, not three
    body = f"[{seq},{middle},{data_text}]"
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def lock(session: Session) -> AuditHead:
    """Take the chain's head for this transaction (a row lock on PostgreSQL), read once and kept.

    Every write that records something appends here, so taking it first serializes writers across
    processes; what the transaction reads afterwards is what the others committed."""
    head = session.info.get("audit_head")
    if head is None:
        head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
        if head is None:   # the first event ever: replicas may write it together, one row wins
            dialect = session.get_bind().dialect.name
            first = (pg_insert if dialect == "postgresql" else sqlite_insert)(AuditHead)
            session.execute(first.values(id=1, seq=0, hash=GENESIS).on_conflict_do_nothing())
            head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
        session.info["audit_head"] = head   # Store.write(): one session per transaction
    return head


def _string_keys(value: Any) -> bool:
    """True when every mapping in `value` has only string keys: its sorted JSON then reads back as the same JSON."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or (isinstance(v, dict | list | tuple) and not _string_keys(v)):
                return False
    elif isinstance(value, list | tuple):
        for v in value:
            if isinstance(v, dict | list | tuple) and not _string_keys(v):
                return False
    return True


def _canonical(data: dict[str, Any]) -> str:
    """The JSON text an event's data is stored as: the digest's canonical form (sorted keys), which reads back as
    the same JSON, so one encoding serves both (an intake batch appends thousands of events)."""
    if not _string_keys(data):   # keys that are not strings sort differently once they are: make them strings first
        data = json.loads(json.dumps(data, default=str))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def append(session: Session, kind: str, data: dict[str, Any], incident_id: str | None = None) -> None:
    """Add one event inside the caller's write transaction (so it commits with the change it records)."""
    head = lock(session)
    pending = session.info.setdefault("audit_pending", [])
    # The chain's tip is this transaction's last event; the head row takes it once, at the commit
    prev_seq, prev_hash = (pending[-1]["seq"], pending[-1]["hash"]) if pending else (head.seq, head.hash)
    seq = prev_seq + 1
    at = datetime.now(UTC).isoformat()
    text = _canonical(data)
    digest = _digest(prev_hash, seq, at, incident_id, kind, text)
    # Written in one statement when the transaction commits
    pending.append({"seq": seq, "at": at, "incident_id": incident_id, "kind": kind, "data_text": text,
                    "prev_hash": prev_hash, "hash": digest})


#: serve's log of every incident's steps (opened, each state with its reason, the dry run, votes, ...): one line an
#: event, after its transaction committed, from the audit events themselves. Left out: what one alert or one read adds.
steps = logging.getLogger("remediator.incidents")
_QUIET = {"incident.evidence"}
_SHOWN = ("alertname", "host", "severity", "from", "to", "entry", "by", "decision", "summary", "digest", "cause", "reason")


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop("audit_pending", None)
    if pending:
        # Core, and the data as the JSON text append() made: an intake batch appends thousands of events
        as_text = bindparam("data_text", type_=Text)
        stored = as_text if session.get_bind().dialect.name == "sqlite" else cast(as_text, JSON)
        session.connection().execute(insert(core(AuditEvent)).values(data=stored), pending)
        head = lock(session)
        head.seq, head.hash = pending[-1]["seq"], pending[-1]["hash"]   # flushed by the commit, after this hook
        session.info["audit_new_head"] = (head.seq, head.hash)
        if steps.isEnabledFor(logging.INFO):
            session.info["audit_to_log"] = pending


@event.listens_for(Session, "after_commit")
def _log_steps(session: Session) -> None:
    for e in session.info.pop("audit_to_log", ()):
        if e["kind"] in _QUIET:
            continue
        data = json.loads(e["data_text"])
        fields = " ".join(f"{k}={json.dumps(str(data[k])[:300])}" for k in _SHOWN if data.get(k) not in (None, ""))
        steps.info("%s%s %s", e["kind"], f" incident={e['incident_id']}" if e["incident_id"] else "", fields)


@event.listens_for(Session, "after_rollback")
def _forget_steps(session: Session) -> None:
    session.info.pop("audit_to_log", None)


@event.listens_for(Session, "after_commit")
def _export_head(session: Session) -> None:
    head = session.info.pop("audit_new_head", None)
    for sink in session.info.get("audit_sinks", ()) if head else ():
        try:
            sink(*head)
        except Exception:   # the change is committed; a sink that is down must not make it look failed
            log.exception("could not export the audit head %s", head[0])


def head(store: Store) -> tuple[int, str]:
    """The chain's head now: the last event's seq and hash (0 and GENESIS before the first)."""
    with store.read() as session:
        row = session.get(AuditHead, 1)
        return (row.seq, row.hash) if row else (0, GENESIS)


class AuditReport(BaseModel):
    ok: bool
    events: int
    problems: list[str]
    checkpoint: int = 0         # the last pruned event's seq (0: nothing was pruned)
    behind_checkpoint: int = 0  # exported heads in the pruned prefix: only the checkpoint's signature vouches for them


def checkpoint_signature(key: bytes, seq: int, digest: str, events: int) -> str:
    """The HMAC a checkpoint of a pruned prefix carries (remediator/engine/store/checkpoint.py makes them)."""
    return hmac.new(key, f"remediator-audit-checkpoint:{seq}:{digest}:{events}".encode(), hashlib.sha256).hexdigest()


def verify(store: Store, expect: Sequence[tuple[int, str]] = (), key: bytes | None = None) -> AuditReport:
    """Walk the whole chain; report every break (edited, missing or reordered events), and every exported head
    (`expect`: seq, hash) the chain no longer holds (a tail cut off together with its head row). After a prune it
    starts from the checkpoint (remediator/engine/store/checkpoint.py), whose signature `key` checks."""
    problems: list[str] = []
    prev, expected_seq, count, behind, cut_at = GENESIS, 1, 0, 0, 0
    wanted = {seq: digest for seq, digest in expect if seq > 0}   # 0 is the empty chain's genesis
    with store.read() as session:
        if not store.is_sqlite:   # one snapshot for the head and the walk: appends go on meanwhile, and READ COMMITTED
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})   # would see them in between
        head = session.get(AuditHead, 1)
        cp = session.get(AuditCheckpoint, 1)
        if cp is not None:
            if key is None:
                problems.append(f"the checkpoint at event {cp.seq} cannot be checked: no key given "
                                "(set audit_checkpoint_key)")
            elif not hmac.compare_digest(cp.signature, checkpoint_signature(key, cp.seq, cp.hash, cp.events)):
                problems.append(f"the checkpoint at event {cp.seq} does not match its signature (moved or edited)")
            prev, expected_seq, cut_at = cp.hash, cp.seq + 1, cp.seq
            if cp.seq in wanted and wanted.pop(cp.seq) != cp.hash:
                problems.append(f"event {cp.seq}: the checkpoint's hash is not the one exported as the head then")
            behind = sum(1 for s in wanted if s < cp.seq)   # pruned: shipped by `audit export` before
            wanted = {s: d for s, d in wanted.items() if s > cp.seq}
        for ev in session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars():
            count += 1
            if ev.seq in wanted and wanted.pop(ev.seq) != ev.hash:
                problems.append(f"event {ev.seq}: its hash is not the one exported as the head then (rewritten)")
            if ev.seq != expected_seq:
                problems.append(f"event {expected_seq} is missing (next present is {ev.seq})")
            if ev.prev_hash != prev:
                problems.append(f"event {ev.seq}: does not follow the event before it (deleted or reordered)")
            if _digest(ev.prev_hash, ev.seq, ev.at, ev.incident_id, ev.kind, _canonical(ev.data)) != ev.hash:
                problems.append(f"event {ev.seq} ({ev.kind}): content does not match its hash (edited)")
            prev, expected_seq = ev.hash, ev.seq + 1
        if head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
            problems.append(f"the chain ends at event {expected_seq - 1} but its head says {head.seq}: events at the end were removed")
    for seq in sorted(wanted):
        problems.append(f"event {seq} was exported as the head ({wanted[seq][:12]}…) but the chain ends at event "
                        f"{expected_seq - 1}: events at the end were removed, with the head")
    return AuditReport(ok=not problems, events=count, problems=problems, checkpoint=cut_at,
                       behind_checkpoint=behind)


def mark_shipped(store: Store, first: int, last: int, by: str) -> None:
    """Record that events `first`..`last` were written out whole (`remediator audit export`): a prune may cut them."""
    with store.write() as session:
        append(session, EXPORTED, {"from": first, "upto": last, "by": by})


def shipped_upto(session: Session) -> int:
    """The last seq such that every event up to it was shipped (or already cut behind the checkpoint)."""
    cp = session.get(AuditCheckpoint, 1)
    reach = cp.seq if cp else 0
    spans = sorted((int(d["from"]), int(d["upto"])) for d in session.execute(
        select(AuditEvent.data).where(AuditEvent.kind == EXPORTED)).scalars())
    for first, last in spans:
        if first <= reach + 1:
            reach = max(reach, last)
    return reach


def export(store: Store, since: int = 0) -> Iterator[dict[str, Any]]:
    """Every event after seq `since`, oldest first, as it is stored (each with its hash and the one before it)."""
    with store.read() as session:
        for ev in session.execute(select(AuditEvent).where(AuditEvent.seq > since).order_by(AuditEvent.seq)
                                  .execution_options(yield_per=1000)).scalars():
            yield {"seq": ev.seq, "at": ev.at, "incident_id": ev.incident_id, "kind": ev.kind, "data": ev.data,
                   "prev_hash": ev.prev_hash, "hash": ev.hash}
