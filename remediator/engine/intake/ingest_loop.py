"""The ingest loop: takes what is stored and not yet taken in into incidents, batch after batch, oldest first.

It reads the store itself, never memory, so what a crash left behind is taken in by the same path as everything
else. It runs wherever the ingester puts it (remediator/engine/intake/ingester.py): in serve's child process, or in
a thread of serve's own.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import Text, cast, select, update

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.decide import closing
from remediator.engine.errors import StoreUnavailable
from remediator.engine.intake.inbox import Inbox, IntakeResult, batch_of, ingest, ingest_alert_by_alert
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.leader import INGEST, serialize
from remediator.engine.store.tables import Delivery, utcnow

__all__ = ["IngestLoop", "Batch"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What one batch became: deliveries taken in (or marked failed), results, incidents closed (for the metrics)."""

    taken: list[int]
    results: list[IntakeResult]
    closed: list[tuple[str, float]]
    moved_upto: int   # every inbox row up to this id is in the store now
    seconds: float = 0.0   # how long it took: the webhook paces a storm by it (Ingester.behind_s)


class IngestLoop:
    """Takes what is stored and not taken in into incidents, batch after batch, wherever it is run.

    `report` hears each batch; `stuck` why the store refuses it for now ('' once it takes it); `taking` which
    deliveries a batch takes in, as it starts (the webhook paces a storm by what waits beyond them)."""

    def __init__(self, inbox: Inbox, inventory: Inventory, settings: Settings, report: Callable[[Batch], None],
                 stuck: Callable[[str], None], taking: Callable[[list[int]], None] = lambda _ids: None):
        self.inbox, self.store, self.inventory, self.report, self.stuck = inbox, inbox.main, inventory, report, stuck
        self.taking = taking
        self.settings = settings
        self._closed: list[tuple[str, float]] = []
        # Its own lifecycle: the closes it makes are counted by whoever holds the metrics (the parent process).
        self.lifecycle = closing.lifecycle(settings, inventory,
                                           also=[lambda _, __, state, s: self._closed.append((state.value, s))])
        self.max_batch_alerts = settings.intake_batch_alerts
        self.moved_upto: int | None = None   # the newest inbox row moved into the store (read from it at first)
        self.linger_s = settings.intake_linger_s

    def run(self, wait: Callable[[float], bool], stopping: Callable[[], bool]) -> None:
        """Until `stopping()`: take in what waits; when nothing does, `wait` for a nudge or a second."""
        was_stuck = True   # whatever the parent heard before this loop ran (a store down at the start) is cleared
        while not stopping():
            try:
                taken = self.take_in_next(stopping)
            except StoreUnavailable as exc:
                self.stuck(exc.message)
                was_stuck = True
                wait(1.0)
                continue
            except Exception as exc:   # a bug, not the store: say so and go on (what waits stays in the store)
                log.exception("the ingester could not take in the next batch; trying again")
                self.stuck(f"{type(exc).__name__}: see serve's log")
                was_stuck = True
                wait(1.0)
                continue
            if was_stuck:   # the store answers again, with nothing waiting: no longer stuck either
                self.stuck("")
                was_stuck = False
            # Then a moment for more to arrive: under a storm one bigger batch costs far less than many small ones
            # (the queries, the flush and the report are per batch), and the webhook gets the core meanwhile. Alone,
            # an alert reaches its incident this much later. Not when more came during the batch: that one is waiting.
            if (taken and not wait(0)) or (not taken and wait(1.0)):
                time.sleep(self.linger_s)

    def take_in_next(self, stopping: Callable[[], bool] = lambda: False) -> int:
        """One batch of the oldest deliveries not taken in; how many deliveries it held (0: none waits)."""
        started = time.monotonic()
        moved_before = self.moved_upto = self.inbox.floor() if self.moved_upto is None else self.moved_upto
        self.moved_upto = self.inbox.move(self.max_batch_alerts, after=self.moved_upto)
        batch, broken = self.pending()
        if batch:
            self.taking([d for d, _ in batch])
            self.inventory.refresh()   # targets are mapped by the inventory as it is now
        for delivery_id in broken:
            self._mark_failed(delivery_id, "its stored body is not a valid webhook any more")
        results = self._ingest(batch, stopping) if batch else []
        if not batch and not broken and self.moved_upto == moved_before:
            return 0
        self.stuck("")
        closed, self._closed = self._closed, []
        try:
            self.report(Batch([d for d, _ in batch] + broken, results, closed, self.moved_upto,
                              time.monotonic() - started))
        except Exception:
            log.exception("after taking in %d deliveries", len(batch))
        return len(batch) + len(broken) or 1

    def pending(self) -> tuple[list[tuple[int, AlertmanagerPayload]], list[int]]:
        """The oldest deliveries moved out of the inbox and not taken in, up to `intake_batch_alerts` alerts (at least
        one delivery); and the ids of any whose stored body no longer validates."""
        with self.store.read() as session:
            heads = session.execute(select(Delivery.id, Delivery.alerts_count).where(Delivery.ingested_at.is_(None))
                                    .order_by(Delivery.id).limit(1000)).all()
            ids = batch_of(heads, self.max_batch_alerts)
            # The body as its JSON text, validated from that by pydantic's own parser: no Python dicts in between
            rows = session.execute(select(Delivery.id, cast(Delivery.body, Text)).where(Delivery.id.in_(ids))
                                   .order_by(Delivery.id)).all() if ids else []
        batch, broken = [], []
        for delivery_id, body in rows:
            try:
                batch.append((delivery_id, AlertmanagerPayload.model_validate_json(body)))
            except ValidationError:
                broken.append(delivery_id)
        return batch, broken

    def _ingest(self, batch: list[tuple[int, AlertmanagerPayload]], stopping: Callable[[], bool]
                ) -> list[IntakeResult]:
        while True:
            try:
                with self.store.write() as session:
                    serialize(session, INGEST)   # replicas' ingesters take turns: a delivery is taken in once
                    return ingest(session, batch, self.inventory, self.lifecycle, self.settings)
            except StoreUnavailable as exc:   # acknowledged, so never dropped: try again
                log.warning("cannot take in %d deliveries yet: %s", len(batch), exc.message)
                self.stuck(exc.message)
                if stopping():
                    raise
                time.sleep(1)
            except Exception:
                self._closed.clear()   # that transaction was rolled back: its closes did not happen
                if len(batch) > 1:     # one delivery broke the batch: the others each on its own
                    return [r for one in batch for r in self._ingest([one], stopping)]
                return self._alert_by_alert(*batch[0], stopping)

    def _alert_by_alert(self, delivery_id: int, payload: AlertmanagerPayload, stopping: Callable[[], bool]
                        ) -> list[IntakeResult]:
        """One delivery broke: its alerts each on their own, so one bad alert does not lose the rest."""
        log.warning("delivery %s could not be taken in whole; taking its %d alerts in one by one",
                    delivery_id, len(payload.alerts))
        while True:
            try:
                return [ingest_alert_by_alert(self.store, delivery_id, payload, self.inventory, self.lifecycle, self.settings)]
            except StoreUnavailable as exc:   # alerts taken in already are duplicates next time round
                self.stuck(exc.message)
                if stopping():
                    raise
                time.sleep(1)
            except Exception:
                log.exception("delivery %s could not be taken in; it stays in the store, marked", delivery_id)
                self._mark_failed(delivery_id, "could not be taken in: see the log")
                return []

    def _mark_failed(self, delivery_id: int, why: str) -> None:
        try:
            with self.store.write() as session:
                session.execute(update(Delivery), [{"id": delivery_id, "ingested_at": utcnow(), "outcome": {"error": why}}])
                audit.append(session, "delivery.failed", {"delivery": delivery_id, "why": why})
        except Exception:
            log.exception("delivery %s: could not record the failure", delivery_id)
