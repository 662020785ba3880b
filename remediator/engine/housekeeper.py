"""The housekeeper: serve's chores as a table, each with its period, run by one thread.

Some chores are this replica's own (restarting an ingester that ended, settling its backlog from the store); the
rest are singletons across replicas and run only on the replica that holds the housekeeper's lock
(remediator/engine/store/leader.py): taking over what a dead replica left, the hourly audit check, approval expiry,
the outbox and the daily prune. A chore that fails is logged and tried again at its next turn; it never stops the
others. `run_due()` is one pass, so a test runs the chores without the thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from remediator.engine.errors import StoreUnavailable

__all__ = ["Chore", "Housekeeper"]

log = logging.getLogger(__name__)


@dataclass
class Chore:
    """`run` every `every_s` seconds (0: every pass), the first time `first_after_s` after the start; `leader_only`
    chores run on one replica at a time. `when` turns a chore off where it does not apply."""

    name: str
    run: Callable[[], object]
    every_s: float = 0.0
    first_after_s: float = 0.0
    leader_only: bool = True
    when: Callable[[], bool] = lambda: True
    due_at: float = 0.0


class Housekeeper:
    """The chores, a pass every `tick_s`, on a daemon thread between start() and stop()."""

    def __init__(self, chores: list[Chore], leads: Callable[[], bool], tick_s: float = 0.5):
        """`leads`: does this replica hold the housekeeper's lock now (asked once a pass)."""
        self.chores, self._leads, self.tick_s = chores, leads, tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        now = time.monotonic()
        for chore in self.chores:
            chore.due_at = now + chore.first_after_s
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="housekeeper", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_due()

    def run_due(self, now: float | None = None) -> list[str]:
        """One pass: every chore that is due (and, if leader_only, only while this replica leads); the names run."""
        now = time.monotonic() if now is None else now
        try:
            leads = self._leads()
        except StoreUnavailable as exc:
            log.warning("housekeeping skipped: %s", exc.message)
            return []
        ran = []
        for chore in self.chores:
            if now < chore.due_at or (chore.leader_only and not leads) or not chore.when():
                continue
            chore.due_at = now + chore.every_s
            try:
                chore.run()
                ran.append(chore.name)
            except StoreUnavailable as exc:
                log.warning("housekeeping (%s) skipped: %s", chore.name, exc.message)
            except Exception:
                log.exception("housekeeping (%s) failed; trying again", chore.name)
        return ran
