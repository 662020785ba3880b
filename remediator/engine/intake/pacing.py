"""Pacing: under a storm the webhook holds its answer until the ingester has room, so what is acknowledged is taken in
at the rate it is acknowledged.

A 2xx tells Alertmanager the alert is handled. Answering faster than the ingester takes alerts into incidents only
grows a queue: the newest alert of a 50,000-alert backlog waited seconds for its incident. So a webhook is answered
once taking in what waits beyond the ingester's batch in hand (with its own alerts) would take the ingester at most
`intake_lag_max_s` at its recent rate; until then its answer is held (Alertmanager waits for it, and sends no more of
that group meanwhile). The next batch is ready as the one in hand ends, so the ingester never waits for the webhook,
and an acknowledged alert is in its incident about twice `intake_lag_max_s` later.

Pacing only delays, it never refuses: after `intake_hold_s` a held webhook is taken as it would be unpaced (only
`intake_backlog_max` answers 503). And it never holds while what waits beyond the batch in hand is under a tenth of
`intake_batch_alerts`: smaller batches cost more in per-batch work (the queries, the commit) than they save in lag, and
a rate measured on them only falls further (a store slow per batch, PostgreSQL under load, would pace itself down to
one webhook a batch). A delivery is admitted whenever nothing waits, however big it is.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from remediator.engine.errors import StoreUnavailable

__all__ = ["Pacer", "Intake"]


class Intake(Protocol):
    """What the pacer reads of the ingester (remediator/engine/intake/ingester.py)."""

    backlog: int   # alerts acknowledged, not yet taken in
    in_hand: int   # of those, the alerts of the batch being taken in now

    def behind_s(self, more: int = 0) -> float:
        """How long taking in what waits beyond the batch in hand, and `more` alerts, would take."""
        ...


class Pacer:
    """Admits webhooks at the ingester's pace; `progress()` is called (from any thread) as each batch starts and ends."""

    def __init__(self, intake: Intake, lag_max_s: float, hold_s: float, floor_alerts: int):
        self.intake, self.lag_max_s, self.hold_s, self.floor_alerts = intake, lag_max_s, hold_s, floor_alerts
        self.admitting = 0   # alerts admitted and not yet stored (so not yet counted as waiting); on the event loop
        self.held = 0        # webhooks whose answer is held now (a gauge)
        self._lock = threading.Lock()
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def behind(self, alerts: int) -> bool:
        """Would these alerts wait longer than the lag allows (with something waiting, and more than the floor)?"""
        more = self.admitting + alerts
        queued = self.intake.backlog - self.intake.in_hand + more
        return (self.admitting > 0 or self.intake.backlog > 0) and queued > self.floor_alerts and \
            self.intake.behind_s(more) > self.lag_max_s

    async def admit(self, alerts: int, gone: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Return once these alerts may be stored (then call `done(alerts)`): when the ingester has room, or after
        `hold_s`. StoreUnavailable once `gone()` says the sender stopped waiting (it had no answer, so it sends them
        again: none are stored)."""
        deadline = time.monotonic() + self.hold_s
        while self.behind(alerts) and (left := deadline - time.monotonic()) > 0:
            self.held += 1
            try:
                await self._progress(left)
            finally:
                self.held -= 1
            if gone is not None and await gone():
                raise StoreUnavailable("the sender closed the connection while its answer was held: nothing was stored")
        self.admitting += alerts

    def done(self, alerts: int) -> None:
        """Admitted alerts are stored (counted as waiting now), or were not stored after all."""
        self.admitting -= alerts

    def progress(self) -> None:
        """The ingester started or ended a batch: every held webhook looks again."""
        with self._lock:
            wakers, self._wakers = self._wakers, []
        for loop, future in wakers:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:   # that loop is closed: nobody waits on it any more
                pass

    async def _progress(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._wakers.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            pass


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
