"""A truncated group's missing alerts: fetched from Alertmanager's API v2 and taken in as a delivery of their own.

Alertmanager cuts a webhook at `max_alerts` and says how many it left out (`truncatedAlerts`). Only a delivery for
remediator's own receiver is followed up, and the query names the configured receiver, never the body's, so a
sender cannot pull in other routes' alerts. What is fetched goes the way every delivery goes: into the inbox, then
taken in by the ingester; the truncated delivery's record says what came of it.

Fetches run on a small pool (`submit`), one per group at a time and a bounded number waiting: a sender that posts
one truncated delivery many times costs one API call in flight, not a thread and a call each.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from remediator.engine.intake import inbox
from remediator.engine.intake.alertmanager import AlertmanagerAPIError, fetch_group_alerts
from remediator.engine.intake.incidents import REFETCH_SENDER, refetched_for
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store
from remediator.engine.store.queries import get_delivery

__all__ = ["Refetch", "REFETCH_SENDER"]

log = logging.getLogger(__name__)


class Refetch:
    """`store_payload(payload, sender)` acknowledges a delivery and returns its id; `taken_in(id, timeout_s)` waits
    for the ingester; `wake()` tells the workers there is work."""

    #: fetches at once, and groups waiting or in flight at most (past it a truncated delivery is noted, not fetched)
    WORKERS, PENDING_MAX = 2, 16

    def __init__(self, settings: Settings, store: Store, inbox_store: Store,
                 store_payload: Callable[[AlertmanagerPayload, str], int], taken_in: Callable[[int, float], bool],
                 wake: Callable[[], None]):
        self.settings, self.store, self.inbox_store = settings, store, inbox_store
        self.store_payload, self.taken_in, self.wake = store_payload, taken_in, wake
        self._pool: ThreadPoolExecutor | None = None   # made at the first fetch (again after close())
        self._pending: dict[tuple, int] = {}   # (receiver, group labels) -> the delivery it is fetched for
        self._lock = threading.Lock()

    def submit(self, payload: AlertmanagerPayload, result: inbox.IntakeResult) -> Future | None:
        """Fetch on the pool what `payload` left out, unless its group is being fetched already or too many wait
        (then the delivery's record says so, and the group's next delivery fetches it); the fetch's future."""
        group = (payload.receiver, tuple(sorted(payload.groupLabels.items())))
        with self._lock:
            other = self._pending.get(group)
            busy = other is None and len(self._pending) >= self.PENDING_MAX
            if other is None and not busy:
                self._pending[group] = result.delivery_id
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="refetch")
                pool = self._pool
        if other is not None:
            inbox.note_refetch(self.store, result, f"not fetched again: the same group is being fetched for delivery {other}")
            return None
        if busy:
            inbox.note_refetch(self.store, result, f"not fetched: {self.PENDING_MAX} truncated groups are being fetched "
                                                   "already; the group's next delivery fetches it")
            return None

        def fetch() -> int:
            try:
                return self(payload, result)
            except Exception:
                log.exception("truncated delivery %s: the refetch failed", result.delivery_id)
                return 0
            finally:
                with self._lock:
                    self._pending.pop(group, None)
        return pool.submit(fetch)

    def close(self) -> None:
        """No more fetches; one running finishes on its own (its delivery is in the store either way)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def __call__(self, payload: AlertmanagerPayload, result: inbox.IntakeResult) -> int:
        """Fetch and take in what `payload` (a delivery whose intake was `result`) left out; how many were new."""
        s = self.settings
        assert s.alertmanager_url
        if payload.receiver != s.alertmanager_receiver:
            inbox.note_refetch(self.store, result, f"not fetched: the delivery names receiver {payload.receiver!r}, not "
                                                   f"remediator's ({s.alertmanager_receiver!r})")
            return 0
        try:
            alerts = fetch_group_alerts(s.alertmanager_url, dict(payload.groupLabels), s.alertmanager_receiver,
                                        limit=s.alertmanager_refetch_max)
        except AlertmanagerAPIError as exc:
            log.warning("truncated delivery %s: %s", result.delivery_id, exc)
            inbox.note_refetch(self.store, result, f"could not fetch the {payload.truncatedAlerts} alerts left out: {exc}")
            return 0
        if not alerts:
            inbox.note_refetch(self.store, result, "the Alertmanager API had no further active alerts for this group")
            return 0
        # Counted as the truncated delivery's sender's: they join, dedup against and are resolved by its alerts only.
        sender = get_delivery(self.store, result.delivery_id, self.inbox_store).sender
        fetched = self.store_payload(payload.model_copy(update={"alerts": alerts, "truncatedAlerts": 0}),
                                     refetched_for(sender))
        if not self.taken_in(fetched, 60):
            inbox.note_refetch(self.store, result, f"fetched {len(alerts)} alerts from the Alertmanager API (delivery "
                                                    f"{fetched}); not yet taken in")
            return 0
        new = get_delivery(self.store, fetched, self.inbox_store).new or 0
        inbox.note_refetch(self.store, result, f"fetched {len(alerts)} alerts from the Alertmanager API, "
                                                f"{new} of them new (delivery {fetched})")
        self.wake()
        return new
