"""A truncated group's missing alerts: fetched from Alertmanager's API v2 and taken in as a delivery of their own.

Alertmanager cuts a webhook at `max_alerts` and says how many it left out (`truncatedAlerts`). Only a delivery for
remediator's own receiver is followed up, and the query names the configured receiver, never the body's, so a
sender cannot pull in other routes' alerts. What is fetched goes the way every delivery goes: into the inbox, then
taken in by the ingester; the truncated delivery's record says what came of it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

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

    def __init__(self, settings: Settings, store: Store, inbox_store: Store,
                 store_payload: Callable[[AlertmanagerPayload, str], int], taken_in: Callable[[int, float], bool],
                 wake: Callable[[], None]):
        self.settings, self.store, self.inbox_store = settings, store, inbox_store
        self.store_payload, self.taken_in, self.wake = store_payload, taken_in, wake

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
