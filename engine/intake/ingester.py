"""The ingester: takes acknowledged deliveries into incidents, in batches, on a thread of its own."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import func, select, update

from engine.errors import StoreUnavailable
from engine.intake.inbox import IntakeResult, ingest, ingest_alert_by_alert, pending
from engine.intake.targets import Inventory
from engine.model.alerts import AlertmanagerPayload
from engine.pipeline.lifecycle import Lifecycle
from engine.store import audit
from engine.store.db import Delivery, Store, utcnow

__all__ = ["Ingester"]

log = logging.getLogger(__name__)


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
                results = self._alert_by_alert(*batch[0])
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

    def _alert_by_alert(self, delivery_id: int, payload: AlertmanagerPayload) -> list[IntakeResult]:
        """One delivery broke: its alerts each on their own, so one bad alert does not lose the rest."""
        log.warning("delivery %s could not be taken in whole; taking its %d alerts in one by one",
                    delivery_id, len(payload.alerts))
        while True:
            try:
                return [ingest_alert_by_alert(self.store, delivery_id, payload, self.inventory, self.lifecycle)]
            except StoreUnavailable as exc:   # alerts taken in already are duplicates next time round
                self.stuck = exc.message
                if self._stop:
                    return []
                time.sleep(1)
            except Exception:
                log.exception("delivery %s could not be taken in; it stays in the store, marked", delivery_id)
                self._mark_failed(delivery_id)
                return []

    def _mark_failed(self, delivery_id: int) -> None:
        try:
            with self.store.write() as session:
                session.execute(update(Delivery), [{"id": delivery_id, "ingested_at": utcnow(),
                                                    "outcome": {"error": "could not be taken in: see the log"}}])
                audit.append(session, "delivery.failed", {"delivery": delivery_id})
        except Exception:
            log.exception("delivery %s: could not record the failure", delivery_id)
