"""Intake: a webhook body is validated, stored, acknowledged, and then taken into incidents.

Alertmanager retries on 5xx only and drops what got a 4xx, so: a body that is wrong raises
PayloadError (4xx, naming the field); a body we cannot store raises StoreUnavailable (503, it comes
again). A 2xx means the delivery is on disk (an inbox): the `Ingester` (remediator/engine/intake/ingester.py) then
takes it into alerts and incidents (dedup, correlation, resolved closes) in batches, after a crash takes
in whatever was acknowledged but not yet taken in, and takes a delivery the store refuses whole in alert
by alert, so one bad alert loses nothing else. Concurrent webhooks share one transaction and one fsync
(`GroupCommit`), so under a storm the cost of durability is paid once per batch, not per request.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import Text, bindparam, delete, func, insert, select, text, type_coerce, update
from sqlalchemy.orm import Session

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.errors import PayloadError, StoreUnavailable
from remediator.engine.intake import incidents
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.model.states import IncidentState
from remediator.engine.outbound.notify import notify_digest
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.leader import INGEST, serialize
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import Delivery, InboxRow, Incident, core, utcnow

__all__ = ["parse_payload", "Received", "accept", "accept_many", "Inbox", "batch_of", "ingest", "ingest_alert_by_alert",
           "stored_payload", "note_refetch", "IntakeResult"]

log = logging.getLogger(__name__)



def parse_payload(body: bytes) -> AlertmanagerPayload:
    """Validate a webhook body; PayloadError names the field that is wrong."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}", status=400) from None
    except RecursionError:
        raise PayloadError("the body is JSON nested too deeply to be an Alertmanager webhook", status=400) from None
    if not isinstance(raw, dict):
        raise PayloadError(f"the body must be a JSON object (Alertmanager webhook v4), got {type(raw).__name__}")
    try:
        return AlertmanagerPayload.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors()[:10]:
            where = ".".join(str(p) for p in e["loc"]) or "body"
            problems.append(f"{where}: {e['msg']}")
        raise PayloadError("invalid Alertmanager payload: " + "; ".join(problems)) from None


@dataclass
class IntakeResult:
    delivery_id: int
    alerts: int
    new_alerts: int
    duplicates: int
    incidents: list[str] = field(default_factory=list)   # incidents opened or touched
    escalated: list[str] = field(default_factory=list)   # opened for no inventory host: nothing can be run
    failed: list[dict[str, str]] = field(default_factory=list)   # alerts the store refused (fingerprint, error)
    truncated: int = 0   # alerts the sender left out of the delivery (truncatedAlerts)

    def outcome(self) -> dict:
        out = {"new": self.new_alerts, "duplicates": self.duplicates, "incidents": self.incidents,
               "escalated": self.escalated}
        return out | ({"failed": self.failed} if self.failed else {})


@dataclass(frozen=True)
class Received:
    """A webhook body as accepted, and who posted it (a service token's name, or remediator's own refetch)."""

    payload: AlertmanagerPayload
    sender: str


class Inbox:
    """Where acknowledged webhooks wait for the ingester: the `inbox` table, in a SQLite file of its own beside a
    SQLite store (`Settings.inbox_url`), so an acknowledgement never waits for the write lock the ingester's
    transactions hold in the main file; in the store itself on PostgreSQL, whose writers do not block each other.

    An inbox row's id is its delivery's id for good: `move()` copies rows into `deliveries` under the same id (then
    the ingester takes them in) and only then forgets them, so a crash in between leaves a row in both, never in
    neither. Ids are kept above every delivery the store already has."""

    def __init__(self, store: Store, main: Store, settings: Settings):
        self.store, self.main, self.settings = store, main, settings
        if store is not main:
            store.migrate()
        floor = self.floor()
        self.moved_upto = self._forgotten = 0
        with store.write() as session:
            if store.is_sqlite:
                seq = session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'inbox'")).scalar()
                if seq is None:
                    session.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES ('inbox', :f)"), {"f": floor})
                elif seq < floor:
                    session.execute(text("UPDATE sqlite_sequence SET seq = :f WHERE name = 'inbox'"), {"f": floor})
            else:
                # Only ever raised. Another replica's webhook may hold an id above what this start read (uncommitted,
                # or moved into `deliveries` since `floor` was read): lowering the sequence under it handed out an id
                # a delivery already had, and moving the new row then dropped it as taken in.
                session.execute(text("SELECT setval(q.seq, :f) FROM (SELECT pg_get_serial_sequence('inbox', 'id') AS "
                                     "seq) q WHERE COALESCE(pg_sequence_last_value(q.seq::regclass), 0) < :f"),
                                {"f": floor})

    @classmethod
    def open(cls, settings: Settings, main: Store) -> Inbox:
        """The inbox the settings name (`inbox_url`), beside the store `main`."""
        same = settings.inbox_url == main.url
        return cls(main if same else Store(settings.inbox_url, settings.sqlite_synchronous), main, settings)

    def write(self, session: Session, received: list[Received]) -> list[int]:
        """The acknowledgement's work (in the inbox's transaction): every delivery of the batch in one INSERT; their
        ids, in order. It also forgets what the ingester has moved out since: this process is the inbox's only
        writer, so the ingester never holds its lock (it only reads it)."""
        upto = self.moved_upto
        if upto > self._forgotten and self.store is not self.main:   # in the store, move() forgets as it moves
            session.execute(delete(InboxRow).where(InboxRow.id <= upto))
            self._forgotten = upto
        if not received:
            return []
        return list(session.execute(insert(InboxRow).returning(InboxRow.id, sort_by_parameter_order=True), [
            {"group_key": r.payload.groupKey, "status": r.payload.status, "alerts_count": len(r.payload.alerts),
             "truncated": r.payload.truncatedAlerts, "body": r.payload.model_dump(mode="json"), "received_at": utcnow(),
             "sender": r.sender[:64]} for r in received]).scalars())

    def moved(self, upto: int) -> None:
        """The ingester moved every row up to this id into the store: the next write forgets them."""
        self.moved_upto = max(self.moved_upto, upto)

    def forget_moved(self) -> None:
        """Forget what was moved now, in a transaction of its own (no ingester running: tests, tools)."""
        with self.store.write() as session:
            self.write(session, [])

    def floor(self) -> int:
        """The newest delivery the store already has: every inbox row up to it was moved."""
        with self.main.read() as session:
            return session.execute(select(func.max(Delivery.id))).scalar() or 0

    def waiting(self) -> dict[int, int]:
        """Every delivery still in the inbox, with its alerts."""
        floor = 0 if self.store is self.main else self.floor()
        with self.store.read() as session:
            return dict(session.execute(select(InboxRow.id, InboxRow.alerts_count).where(InboxRow.id > floor))
                        .all())

    def taken_in(self, ids: list[int]) -> set[int]:
        """Which of these deliveries are taken in (by any replica's ingester)."""
        with self.main.read() as session:
            return set(session.execute(select(Delivery.id).where(Delivery.id.in_(ids), Delivery.ingested_at.is_not(None)))
                       .scalars())

    def get(self, delivery_id: int) -> InboxRow | None:
        with self.store.read() as session:
            return session.get(InboxRow, delivery_id)

    def move(self, max_alerts: int, after: int) -> int:
        """The oldest rows past `after` (up to `max_alerts` alerts, at least one row) into `deliveries`, to be taken
        in; the newest id moved (`after` when none was). Rows commit to the inbox in id order (one writer), so every
        row up to that id is in the store once this returns."""
        if self.store is self.main:
            return self._move_within(max_alerts, after)
        with self.store.read() as session:
            heads = session.execute(select(InboxRow.id, InboxRow.alerts_count).where(InboxRow.id > after)
                                    .order_by(InboxRow.id).limit(1000)).all()
            ids = batch_of(heads, max_alerts)
            # Both files are SQLite: a body is copied as the JSON text it is, never parsed and written again
            rows = session.execute(select(*(c for c in core(InboxRow).c if c.name != "body"),
                                          type_coerce(InboxRow.body, Text).label("body_text"))
                                   .where(InboxRow.id.in_(ids))).mappings().all() if ids else []
        if not rows:
            return after
        with self.main.write() as session:
            have = set(session.execute(select(Delivery.id).where(Delivery.id.in_(ids))).scalars())
            fresh = [{**r, "new_alerts": 0} for r in rows if r["id"] not in have]
            if fresh:
                session.connection().execute(insert(core(Delivery)).values(body=bindparam("body_text", type_=Text)),
                                             fresh)
        return max(ids)

    def _move_within(self, max_alerts: int, after: int) -> int:
        """The inbox is in the store (PostgreSQL): rows go into `deliveries` and leave the inbox in one transaction,
        one replica at a time. No watermark: replicas' webhooks commit out of id order, and a row that commits late
        is moved the next time. Returns the newest id moved (`after` when none was)."""
        with self.main.write() as session:
            serialize(session, INGEST)
            heads = session.execute(select(InboxRow.id, InboxRow.alerts_count).order_by(InboxRow.id).limit(1000)).all()
            ids = batch_of(heads, max_alerts)
            if not ids:
                return after
            rows = session.execute(select(InboxRow).where(InboxRow.id.in_(ids))).scalars().all()
            have = set(session.execute(select(Delivery.id).where(Delivery.id.in_(ids))).scalars())
            fresh = [_as_delivery(r) for r in rows if r.id not in have]
            if have:   # a row leaves the inbox in the transaction that stores it, so an id in both was handed out twice
                log.error("inbox rows %s carry ids that deliveries already have (the id sequence went back): "
                          "kept under new ids, taken in next", sorted(have))
                session.execute(insert(InboxRow), [{k: v for k, v in _as_delivery(r).items() if k not in ("id", "new_alerts")}
                                                   for r in rows if r.id in have])
            if fresh:
                session.execute(insert(Delivery), fresh)
            session.execute(delete(InboxRow).where(InboxRow.id.in_(ids)))
        return max(max(ids), after)


def _as_delivery(r: InboxRow) -> dict:
    """An inbox row as the `deliveries` row it becomes (the same id)."""
    return {"id": r.id, "received_at": r.received_at, "group_key": r.group_key, "status": r.status,
            "alerts_count": r.alerts_count, "truncated": r.truncated, "body": r.body, "new_alerts": 0, "sender": r.sender}


def batch_of(heads: Sequence[tuple[int, int]], max_alerts: int) -> list[int]:
    """The ids of the first (id, alerts) rows that hold at most `max_alerts` alerts together; at least one."""
    ids: list[int] = []
    alerts = 0
    for delivery_id, count in heads:
        if ids and alerts + count > max_alerts:
            break
        ids.append(delivery_id)
        alerts += count
    return ids


def accept(inbox: Inbox, payload: AlertmanagerPayload, inventory: Inventory, lifecycle: Lifecycle, sender: str
           ) -> IntakeResult:
    """Store one delivery and take it in at once, in this thread (no ingester running); StoreUnavailable when the
    store can't."""
    return accept_many(inbox, [payload], inventory, lifecycle, sender)[0]


def accept_many(inbox: Inbox, payloads: list[AlertmanagerPayload], inventory: Inventory, lifecycle: Lifecycle,
                sender: str) -> list[IntakeResult]:
    """Store several deliveries and take them in, in order, at once: as serve does, without waiting for its
    ingester (tests and tools). Only where no ingester runs: one would take them in first, and this returns less."""
    with inbox.store.write() as session:
        ids = inbox.write(session, [Received(p, sender) for p in payloads])
    inbox.moved(inbox.move(10**9, after=inbox.floor()))
    inbox.forget_moved()
    with inbox.main.write() as session:
        return ingest(session, list(zip(ids, payloads, strict=False)), inventory, lifecycle, inbox.settings)


def ingest(session: Session, deliveries: list[tuple[int, AlertmanagerPayload]], inventory: Inventory,
           lifecycle: Lifecycle, settings: Settings, *, mark: bool = True) -> list[IntakeResult]:
    """Take stored deliveries into alerts and incidents, in order, and mark them taken in (unless `mark` is False).

    A delivery already taken in (recovery and the queue may both hold it) is skipped: it has no result."""
    waiting = dict(session.execute(select(Delivery.id, Delivery.sender).where(
        Delivery.id.in_([d for d, _ in deliveries]), Delivery.ingested_at.is_(None))).all())
    deliveries = [(d, p) for d, p in deliveries if d in waiting]
    if not deliveries:
        return []
    attacher = incidents.Attacher(session, [(a, waiting[d]) for d, p in deliveries for a in p.alerts], inventory,
                                  lifecycle, settings.section(incidents.Correlation))
    results = []
    for delivery_id, payload in deliveries:
        touched: list[str] = []
        new = 0
        for alert in payload.alerts:
            outcome = attacher.attach(delivery_id, alert, waiting[delivery_id])
            new += outcome.new
            if outcome.incident_id and outcome.incident_id not in touched:
                touched.append(outcome.incident_id)
        if payload.truncatedAlerts:
            attacher.flush()
            incidents.note_truncation(session, touched, payload.truncatedAlerts)
        results.append(IntakeResult(delivery_id=delivery_id, alerts=len(payload.alerts), new_alerts=new,
                                    duplicates=len(payload.alerts) - new, incidents=touched,
                                    truncated=payload.truncatedAlerts))
    by_delivery = {r.delivery_id: r for r in results}
    hostless: dict[int, list[Incident]] = {}
    for incident, delivery_id in attacher.hostless.values():
        hostless.setdefault(delivery_id, []).append(incident)
    for delivery_id, escalated in hostless.items():
        by_delivery[delivery_id].escalated += [i.id for i in escalated]
        # One delivery's many hostless alerts make one message, not one each (and not one per channel each).
        digest = len(escalated) > 1
        closed = [i for i in escalated if _escalate_hostless(session, lifecycle, i, tell=not digest)]
        if digest and closed:
            notify_digest(session, settings, closed, f"{len(closed)} alerts of delivery {delivery_id} "
                          f"(from {waiting[delivery_id]}) cannot be acted on: no inventory host, or past the "
                          "sender's cap; each is an escalated incident", dedup_key=f"delivery:{delivery_id}:escalated")
    attacher.flush()
    if mark:
        now = utcnow()
        session.execute(update(Delivery), [{"id": r.delivery_id, "new_alerts": r.new_alerts, "ingested_at": now,
                                            "outcome": r.outcome()} for r in results])
    return results


def ingest_alert_by_alert(store: Store, delivery_id: int, payload: AlertmanagerPayload, inventory: Inventory,
                          lifecycle: Lifecycle, settings: Settings) -> IntakeResult:
    """A delivery that cannot be taken in whole: each alert in a transaction of its own, so one alert the store
    refuses (a NUL byte PostgreSQL will not keep, say) does not lose the others. The refused ones are named in the
    delivery's outcome and the audit. StoreUnavailable still propagates: then nothing is refused, only late."""
    total = IntakeResult(delivery_id=delivery_id, alerts=len(payload.alerts), new_alerts=0, duplicates=0,
                         truncated=payload.truncatedAlerts)
    for alert in payload.alerts:
        one = payload.model_copy(update={"alerts": [alert], "truncatedAlerts": 0})
        try:
            with store.write() as session:
                serialize(session, INGEST)
                done = ingest(session, [(delivery_id, one)], inventory, lifecycle, settings, mark=False)
        except StoreUnavailable:
            raise
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".replace("\x00", "\\0")[:300]
            log.error("delivery %s: alert %s could not be taken in: %s", delivery_id, alert.fingerprint, why)
            total.failed.append({"fingerprint": alert.fingerprint, "error": why})
            continue
        for r in done:
            total.new_alerts += r.new_alerts
            total.duplicates += r.duplicates
            total.incidents += [i for i in r.incidents if i not in total.incidents]
            total.escalated += r.escalated
    with store.write() as session:
        if payload.truncatedAlerts:
            incidents.note_truncation(session, total.incidents, payload.truncatedAlerts)
        session.execute(update(Delivery), [{"id": delivery_id, "new_alerts": total.new_alerts, "ingested_at": utcnow(),
                                            "outcome": total.outcome()}])
        if total.failed:
            audit.append(session, "delivery.partly_failed", {"delivery": delivery_id, "failed": total.failed,
                                                             "taken_in": total.alerts - len(total.failed)})
    return total


def stored_payload(store: Store, delivery_id: int) -> AlertmanagerPayload:
    """A stored delivery's webhook body, as it was accepted."""
    with store.read() as session:
        body = session.execute(select(Delivery.body).where(Delivery.id == delivery_id)).scalar_one()
    return AlertmanagerPayload.model_validate(body)


def _escalate_hostless(session: Session, lifecycle: Lifecycle, incident: Incident, tell: bool) -> bool:
    """An incident on no inventory host (or a sender's overflow) can't be diagnosed or fixed: close it escalated
    now, not via a worker; `tell`: notify about it alone. False when its resolved alert closed it meanwhile."""
    if incident.state != IncidentState.RECEIVED:
        return False
    overflow = incident.correlation_key.startswith(incidents.OVERFLOW)
    reason = incident.reason if overflow else f"no target host: {incident.reason}"
    lifecycle.close(session, incident, IncidentState.ESCALATED, reason, **({} if tell else {"notice": None}))
    return True


def note_refetch(store: Store, result: IntakeResult, outcome: str) -> None:
    """Record on the delivery's incidents what fetching a truncated group's other alerts gave."""
    with store.write() as session:
        for incident_id in result.incidents:
            audit.append(session, "delivery.refetched", {"delivery": result.delivery_id, "outcome": outcome}, incident_id)
