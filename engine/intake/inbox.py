"""Intake: a webhook body is validated, stored, acknowledged, and then taken into incidents.

Alertmanager retries on 5xx only and drops what got a 4xx, so: a body that is wrong raises
PayloadError (4xx, naming the field); a body we cannot store raises StoreUnavailable (503, it comes
again). A 2xx means the delivery is on disk (an inbox): `Ingester` then takes it into alerts and
incidents (dedup, correlation, resolved closes) in batches, and after a crash takes in whatever was
acknowledged but not yet taken in. Concurrent webhooks share one transaction and one fsync
(`GroupCommit`), so under a storm the cost of durability is paid once per batch, not per request.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from engine.errors import PayloadError, StoreUnavailable
from engine.intake import incidents
from engine.intake.targets import Inventory
from engine.model.alerts import AlertmanagerPayload
from engine.model.states import IncidentState
from engine.pipeline.lifecycle import Lifecycle
from engine.store import audit
from engine.store.db import Delivery, Incident, Store, utcnow

__all__ = ["parse_payload", "accept", "accept_many", "store_deliveries", "ingest", "pending", "GroupCommit",
           "Ingester", "note_refetch", "IntakeResult"]

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

    def outcome(self) -> dict:
        return {"new": self.new_alerts, "duplicates": self.duplicates, "incidents": self.incidents,
                "escalated": self.escalated}


def accept(store: Store, payload: AlertmanagerPayload, inventory: Inventory, lifecycle: Lifecycle) -> IntakeResult:
    """Store one delivery and take it in, in one transaction; StoreUnavailable when the store can't."""
    return accept_many(store, [payload], inventory, lifecycle)[0]


def accept_many(store: Store, payloads: list[AlertmanagerPayload], inventory: Inventory, lifecycle: Lifecycle
                ) -> list[IntakeResult]:
    """Store several deliveries and take them in, in ONE transaction, in order (no inbox in between)."""
    with store.write() as session:
        ids = store_deliveries(session, payloads)
        return ingest(session, list(zip(ids, payloads, strict=False)), inventory, lifecycle)


def store_deliveries(session: Session, payloads: list[AlertmanagerPayload]) -> list[int]:
    """The acknowledgement's work: every delivery of the batch in one INSERT; their ids, in order."""
    return list(session.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), [
        {"group_key": p.groupKey, "status": p.status, "alerts_count": len(p.alerts), "truncated": p.truncatedAlerts,
         "body": p.model_dump(mode="json"), "received_at": utcnow(), "new_alerts": 0} for p in payloads]).scalars())


def ingest(session: Session, deliveries: list[tuple[int, AlertmanagerPayload]], inventory: Inventory,
           lifecycle: Lifecycle) -> list[IntakeResult]:
    """Take stored deliveries into alerts and incidents, in order, and mark them taken in.

    A delivery already taken in (recovery and the queue may both hold it) is skipped: it has no result."""
    waiting = set(session.execute(select(Delivery.id).where(Delivery.id.in_([d for d, _ in deliveries]),
                                                            Delivery.ingested_at.is_(None))).scalars())
    deliveries = [(d, p) for d, p in deliveries if d in waiting]
    if not deliveries:
        return []
    attacher = incidents.Attacher(session, [a for _, p in deliveries for a in p.alerts], inventory, lifecycle)
    results = []
    for delivery_id, payload in deliveries:
        touched: list[str] = []
        new = 0
        for alert in payload.alerts:
            outcome = attacher.attach(delivery_id, alert)
            new += outcome.new
            if outcome.incident_id and outcome.incident_id not in touched:
                touched.append(outcome.incident_id)
        if payload.truncatedAlerts:
            attacher.flush()
            incidents.note_truncation(session, touched, payload.truncatedAlerts)
        results.append(IntakeResult(delivery_id=delivery_id, alerts=len(payload.alerts), new_alerts=new,
                                    duplicates=len(payload.alerts) - new, incidents=touched))
    by_delivery = {r.delivery_id: r for r in results}
    for incident_id, (incident, delivery_id) in attacher.hostless.items():
        _escalate_hostless(session, lifecycle, incident)
        by_delivery[delivery_id].escalated.append(incident_id)
    attacher.flush()
    now = utcnow()
    session.execute(update(Delivery), [{"id": r.delivery_id, "new_alerts": r.new_alerts, "ingested_at": now,
                                        "outcome": r.outcome()} for r in results])
    return results


def pending(store: Store, upto: int, limit: int = 500) -> list[tuple[int, AlertmanagerPayload]]:
    """Deliveries (id <= upto) acknowledged but not taken in, oldest first."""
    with store.read() as session:
        rows = session.execute(select(Delivery.id, Delivery.body).where(Delivery.ingested_at.is_(None),
                                                                        Delivery.id <= upto)
                               .order_by(Delivery.id).limit(limit)).all()
    return [(row.id, AlertmanagerPayload.model_validate(row.body)) for row in rows]


def _escalate_hostless(session: Session, lifecycle: Lifecycle, incident: Incident) -> None:
    """An incident on no inventory host can't be diagnosed or fixed: tell people now, not via a worker."""
    if incident.state != IncidentState.RECEIVED:   # closed meanwhile by its resolved alert
        return
    reason = f"no target host: {incident.reason}"
    lifecycle.close(session, incident, IncidentState.ESCALATED, reason)


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


class Ingester:
    """Takes acknowledged deliveries into incidents, in batches, on a thread of its own.

    Deliveries come from `put()` (just acknowledged, still in memory) and, first after a start, from
    the store (acknowledged before a crash, never taken in). `backlog` counts the alerts waiting: the
    webhook answers 503 above `intake_backlog_max`, so a storm slows Alertmanager down instead of
    filling memory."""

    def __init__(self, store: Store, inventory: Inventory, lifecycle: Lifecycle,
                 on_ingested: Callable[[list[tuple[AlertmanagerPayload, IntakeResult]]], None]):
        self.store, self.inventory, self.lifecycle, self.on_ingested = store, inventory, lifecycle, on_ingested
        self._cv = threading.Condition()
        self._queue: deque[tuple[int, AlertmanagerPayload]] = deque()
        self.backlog = 0
        self.stuck = ""   # why the batch in hand cannot be taken in yet (the store), for /healthz
        self._thread: threading.Thread | None = None
        self._stop = False
        self.max_batch_alerts = lifecycle.settings.intake_batch_alerts
        self.linger_s = lifecycle.settings.intake_linger_s

    def start(self) -> None:
        """Start taking in: first what was acknowledged before a restart (oldest first), then the queue."""
        with self._cv:
            if self.alive():
                return
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="ingester", daemon=True)
            self._thread.start()

    def _recover(self) -> None:
        """Deliveries acknowledged before this start and never taken in (a crash came between).

        What was acknowledged since is in the queue too; `ingest()` takes each delivery in once."""
        with self.store.read() as session:
            upto = session.execute(select(func.max(Delivery.id)).where(Delivery.ingested_at.is_(None))).scalar() or 0
        found = 0
        while not self._stop and (batch := pending(self.store, upto)):
            self._ingest(batch, queued=False)
            found += len(batch)
        if found:
            log.info("took in %d deliveries acknowledged before a restart", found)

    def stop(self, timeout_s: float = 30) -> None:
        """Finish the batch in hand; what is still queued stays in the store for the next start."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def put(self, delivery_id: int, payload: AlertmanagerPayload) -> None:
        with self._cv:
            self._queue.append((delivery_id, payload))
            self.backlog += len(payload.alerts)
            self._cv.notify_all()

    def wait_idle(self, timeout_s: float = 30) -> bool:
        """Block until everything put is taken in (tests); False on timeout or with no thread running."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self.backlog:   # counts the queue and the batch in hand
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def _take(self) -> list[tuple[int, AlertmanagerPayload]]:
        batch: list[tuple[int, AlertmanagerPayload]] = []
        alerts = 0
        while self._queue and (not batch or alerts + len(self._queue[0][1].alerts) <= self.max_batch_alerts):
            item = self._queue.popleft()
            batch.append(item)
            alerts += len(item[1].alerts)
        return batch

    def _loop(self) -> None:
        try:
            self._recover()
        except Exception:   # the store is down: the queue's path retries; the next start recovers
            log.exception("could not look for deliveries left from before a restart")
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
            # A moment for more to arrive: under a storm one bigger batch costs far less than many
            # small ones (the queries and the flush are per batch), and it keeps the GIL for the
            # webhook's answers. Alone, an alert reaches its incident this much later.
            time.sleep(self.linger_s)
            with self._cv:
                batch = self._take()
            self._ingest(batch)

    def _ingest(self, batch: list[tuple[int, AlertmanagerPayload]], queued: bool = True) -> None:
        while True:
            try:
                with self.store.write() as session:
                    results = ingest(session, batch, self.inventory, self.lifecycle)
                break
            except StoreUnavailable as exc:   # acknowledged, so never dropped: try again
                log.warning("cannot take in %d deliveries yet: %s", len(batch), exc.message)
                self.stuck = exc.message
                if self._stop:
                    return
                time.sleep(1)
            except Exception:
                if len(batch) > 1:   # one delivery broke the batch: the others each on its own
                    for one in batch:
                        self._ingest([one], queued)
                    return
                log.exception("delivery %s could not be taken in; it stays in the store, marked", batch[0][0])
                self._mark_failed(batch[0][0])
                results = []
                break
        self.stuck = ""
        if queued:
            with self._cv:
                self.backlog -= sum(len(p.alerts) for _, p in batch)
                self._cv.notify_all()
        if results:
            payloads = dict(batch)
            try:
                self.on_ingested([(payloads[r.delivery_id], r) for r in results])
            except Exception:
                log.exception("after taking in %d deliveries", len(batch))

    def _mark_failed(self, delivery_id: int) -> None:
        try:
            with self.store.write() as session:
                session.execute(update(Delivery), [{"id": delivery_id, "ingested_at": utcnow(),
                                                    "outcome": {"error": "could not be taken in: see the log"}}])
                audit.append(session, "delivery.failed", {"delivery": delivery_id})
        except Exception:
            log.exception("delivery %s: could not record the failure", delivery_id)


def note_refetch(store: Store, result: IntakeResult, outcome: str) -> None:
    """Record on the delivery's incidents what fetching a truncated group's other alerts gave."""
    with store.write() as session:
        for incident_id in result.incidents:
            audit.append(session, "delivery.refetched", {"delivery": result.delivery_id, "outcome": outcome}, incident_id)
