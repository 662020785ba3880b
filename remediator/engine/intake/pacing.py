"""Pacing: under a storm the webhook holds its answer until the ingester has room, so what is acknowledged is taken in
at the rate it is acknowledged.

A 2xx tells Alertmanager the alert is handled. Answering faster than the ingester takes alerts into incidents only
grows a queue: the newest alert of a 50,000-alert backlog waited seconds for its incident. So a webhook is answered
once taking in what waits (with its own alerts) would take the ingester at most `intake_lag_max_s` at its recent
rate; until then its answer is held (Alertmanager waits for it, and sends no more of that group meanwhile), for up to
`intake_hold_s`, then 503 (Alertmanager retries). A delivery is admitted whenever nothing waits, however big it is.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from remediator.engine.errors import StoreUnavailable

__all__ = ["Pacer"]


class Pacer:
    """Admits webhooks at the ingester's pace. `behind_s(alerts)`: how long taking in what waits, and these alerts,
    would take (remediator/engine/intake/ingester.py); `progress()` is called (from any thread) as each batch starts
    and ends."""

    def __init__(self, behind_s: Callable[[int], float], waiting: Callable[[], int], lag_max_s: float, hold_s: float):
        self.behind_s, self.waiting, self.lag_max_s, self.hold_s = behind_s, waiting, lag_max_s, hold_s
        self.admitting = 0   # alerts admitted and not yet stored (so not yet counted as waiting); on the event loop
        self.held = 0        # webhooks whose answer is held now (a gauge)
        self._lock = threading.Lock()
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def admit(self, alerts: int, gone: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Return once these alerts may be stored (then call `done(alerts)`); StoreUnavailable after `hold_s`, or
        once `gone()` says the sender stopped waiting (it had no answer, so it sends them again: none are stored)."""
        deadline = 0.0
        while (behind := self.behind_s(self.admitting + alerts)) > self.lag_max_s and (self.admitting or self.waiting()):
            now = time.monotonic()
            deadline = deadline or now + self.hold_s
            if now >= deadline:
                raise StoreUnavailable(f"the ingester is {behind:.1f} s behind (intake_lag_max_s {self.lag_max_s:g}): "
                                       f"held {self.hold_s:g} s (intake_hold_s); send again shortly")
            self.held += 1
            try:
                await self._progress(deadline - now)
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
