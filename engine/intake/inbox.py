"""Intake: a webhook body is validated, stored, acknowledged, and then taken into incidents.

Alertmanager retries on 5xx only and drops what got a 4xx, so: a body that is wrong raises
PayloadError (4xx, naming the field); a body we cannot store raises StoreUnavailable (503, it comes
again). A 2xx means the delivery is on disk (an inbox): the `Ingester` (engine/intake/ingester.py) then
takes it into alerts and incidents (dedup, correlation, resolved closes) in batches, after a crash takes
in whatever was acknowledged but not yet taken in, and takes a delivery the store refuses whole in alert
by alert, so one bad alert loses nothing else. Concurrent webhooks share one transaction and one fsync
(`GroupCommit`), so under a storm the cost of durability is paid once per batch, not per request.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from engine.errors import PayloadError, StoreUnavailable
from engine.intake import incidents
from engine.intake.targets import Inventory
from engine.model.alerts import AlertmanagerPayload
from engine.model.states import IncidentState
from engine.outbound.notify import notify_digest
from engine.pipeline.lifecycle import Lifecycle
from engine.store import audit
from engine.store.db import Delivery, Incident, Store, utcnow

__all__ = ["parse_payload", "Received", "accept", "accept_many", "store_deliveries", "ingest", "ingest_alert_by_alert",
           "pending", "GroupCommit", "note_refetch", "IntakeResult"]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")



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

    def outcome(self) -> dict:
        out = {"new": self.new_alerts, "duplicates": self.duplicates, "incidents": self.incidents,
               "escalated": self.escalated}
        return out | ({"failed": self.failed} if self.failed else {})


@dataclass(frozen=True)
class Received:
    """A webhook body as accepted, and who posted it (a service token's name, or remediator's own refetch)."""

    payload: AlertmanagerPayload
    sender: str


def accept(store: Store, payload: AlertmanagerPayload, inventory: Inventory, lifecycle: Lifecycle, sender: str
           ) -> IntakeResult:
    """Store one delivery and take it in, in one transaction; StoreUnavailable when the store can't."""
    return accept_many(store, [payload], inventory, lifecycle, sender)[0]


def accept_many(store: Store, payloads: list[AlertmanagerPayload], inventory: Inventory, lifecycle: Lifecycle,
                sender: str) -> list[IntakeResult]:
    """Store several deliveries and take them in, in ONE transaction, in order (no inbox in between)."""
    with store.write() as session:
        ids = store_deliveries(session, [Received(p, sender) for p in payloads])
        return ingest(session, list(zip(ids, payloads, strict=False)), inventory, lifecycle)


def store_deliveries(session: Session, received: list[Received]) -> list[int]:
    """The acknowledgement's work: every delivery of the batch in one INSERT; their ids, in order."""
    return list(session.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), [
        {"group_key": r.payload.groupKey, "status": r.payload.status, "alerts_count": len(r.payload.alerts),
         "truncated": r.payload.truncatedAlerts, "body": r.payload.model_dump(mode="json"), "received_at": utcnow(),
         "new_alerts": 0, "sender": r.sender[:64]} for r in received]).scalars())


def ingest(session: Session, deliveries: list[tuple[int, AlertmanagerPayload]], inventory: Inventory,
           lifecycle: Lifecycle, *, mark: bool = True) -> list[IntakeResult]:
    """Take stored deliveries into alerts and incidents, in order, and mark them taken in (unless `mark` is False).

    A delivery already taken in (recovery and the queue may both hold it) is skipped: it has no result."""
    waiting = dict(session.execute(select(Delivery.id, Delivery.sender).where(
        Delivery.id.in_([d for d, _ in deliveries]), Delivery.ingested_at.is_(None))).tuples().all())
    deliveries = [(d, p) for d, p in deliveries if d in waiting]
    if not deliveries:
        return []
    attacher = incidents.Attacher(session, [a for _, p in deliveries for a in p.alerts], inventory, lifecycle)
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
                                    duplicates=len(payload.alerts) - new, incidents=touched))
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
            notify_digest(session, lifecycle.settings, closed, f"{len(closed)} alerts of delivery {delivery_id} "
                          f"(from {waiting[delivery_id]}) cannot be acted on: no inventory host, or past the "
                          "sender's cap; each is an escalated incident", dedup_key=f"delivery:{delivery_id}:escalated")
    attacher.flush()
    if mark:
        now = utcnow()
        session.execute(update(Delivery), [{"id": r.delivery_id, "new_alerts": r.new_alerts, "ingested_at": now,
                                            "outcome": r.outcome()} for r in results])
    return results


def ingest_alert_by_alert(store: Store, delivery_id: int, payload: AlertmanagerPayload, inventory: Inventory,
                          lifecycle: Lifecycle) -> IntakeResult:
    """A delivery that cannot be taken in whole: each alert in a transaction of its own, so one alert the store
    refuses (a NUL byte PostgreSQL will not keep, say) does not lose the others. The refused ones are named in the
    delivery's outcome and the audit. StoreUnavailable still propagates: then nothing is refused, only late."""
    total = IntakeResult(delivery_id=delivery_id, alerts=len(payload.alerts), new_alerts=0, duplicates=0)
    for alert in payload.alerts:
        one = payload.model_copy(update={"alerts": [alert], "truncatedAlerts": 0})
        try:
            with store.write() as session:
                done = ingest(session, [(delivery_id, one)], inventory, lifecycle, mark=False)
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


def pending(store: Store, upto: int, limit: int = 500) -> list[tuple[int, AlertmanagerPayload]]:
    """Deliveries (id <= upto) acknowledged but not taken in, oldest first."""
    with store.read() as session:
        rows = session.execute(select(Delivery.id, Delivery.body).where(Delivery.ingested_at.is_(None),
                                                                        Delivery.id <= upto)
                               .order_by(Delivery.id).limit(limit)).all()
    return [(row.id, AlertmanagerPayload.model_validate(row.body)) for row in rows]


def _escalate_hostless(session: Session, lifecycle: Lifecycle, incident: Incident, tell: bool) -> bool:
    """An incident on no inventory host (or a sender's overflow) can't be diagnosed or fixed: close it escalated
    now, not via a worker; `tell`: notify about it alone. False when its resolved alert closed it meanwhile."""
    if incident.state != IncidentState.RECEIVED:
        return False
    overflow = incident.correlation_key.startswith(incidents.OVERFLOW)
    reason = incident.reason if overflow else f"no target host: {incident.reason}"
    lifecycle.close(session, incident, IncidentState.ESCALATED, reason, **({} if tell else {"notice": None}))
    return True


class GroupCommit(Generic[T, R]):
    """Requests that arrive while a transaction is committing are written together in the next one.

    The fsync that makes an acknowledgement durable is the cost of intake; under a storm one fsync
    then covers every request waiting, instead of one each. The caller's thread does the work (the
    first to find nobody committing leads, the others wait for its result), so there is no thread to
    start or lose, and every caller gets its answer only after its own item is committed."""

    def __init__(self, store: Store, write: Callable[[Session, list[T]], list[R]]):
        self.store, self.write = store, write
        self._cv = threading.Condition()
        self._waiting: list[tuple[T, Future[R]]] = []
        self._committing = False

    def submit(self, item: T) -> R:
        """Write this item (with whatever else is waiting); returns once it is committed."""
        mine: Future[R] = Future()
        with self._cv:
            self._waiting.append((item, mine))
            while self._committing and not mine.done():
                self._cv.wait()
            lead = not mine.done()
            if lead:
                self._committing = True
                batch, self._waiting = self._waiting, []
        if lead:
            try:
                self._commit(batch)
            finally:
                with self._cv:
                    self._committing = False
                    self._cv.notify_all()
        return mine.result()

    def _commit(self, batch: list[tuple[T, Future[R]]]) -> None:
        try:
            with self.store.write() as session:
                results = self.write(session, [item for item, _ in batch])
        except StoreUnavailable as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        except Exception:
            if len(batch) == 1:
                batch[0][1].set_exception(sys.exc_info()[1])
                return
            for one in batch:   # one item broke the batch: write the others each on its own, so only it fails
                self._commit([one])
            return
        for (_, future), result in zip(batch, results, strict=False):
            future.set_result(result)


def note_refetch(store: Store, result: IntakeResult, outcome: str) -> None:
    """Record on the delivery's incidents what fetching a truncated group's other alerts gave."""
    with store.write() as session:
        for incident_id in result.incidents:
            audit.append(session, "delivery.refetched", {"delivery": result.delivery_id, "outcome": outcome}, incident_id)
