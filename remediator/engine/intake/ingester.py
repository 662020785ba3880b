"""The ingester: takes acknowledged deliveries into incidents, in batches, in a process of its own (or a thread).

The webhook only stores a delivery and answers (remediator/engine/intake/inbox.py). The ingester reads what is stored and
not yet taken in, oldest first, from the store itself, never from memory: so what a crash left behind is taken
in by the same path as everything else. By default (`intake_process`) the loop runs in a child process, with the
second core to itself: a storm's acknowledgements and its dedup, correlation and audit no longer share one
interpreter (docs/benchmarks.md). The parent keeps only counts (the backlog that turns into 503s) and is told
what each batch became over a pipe; the child dies with it (PR_SET_PDEATHSIG), so a SIGKILL of serve leaves no
second ingester behind.
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from remediator.engine.catalog.inventory import Inventory, load_inventory
from remediator.engine.errors import StoreUnavailable
from remediator.engine.intake.inbox import Inbox
from remediator.engine.intake.ingest_loop import Batch, IngestLoop
from remediator.engine.settings import Settings
from remediator.engine.store.db import open_store

__all__ = ["Ingester", "IngestLoop", "Batch"]   # the loop and its Batch: ingest_loop.py

log = logging.getLogger(__name__)
_SPAWN = multiprocessing.get_context("spawn")   # never fork a process that runs threads


class Ingester:
    """The serve process's side of the ingester: starts the loop (a child process, or a thread), counts the backlog.

    `acknowledged()` is called for each stored delivery; `backlog` counts its alerts until the loop reports it taken
    in: the webhook answers 503 above `intake_backlog_max`, so a storm slows Alertmanager down instead of filling
    memory. `on_ingested` hears each batch, in this process. The child is nudged through a pipe it only reads (a
    byte per acknowledgement, never blocking the webhook), and told what to do through nothing else: when that pipe
    closes (stop, or this process died) it finishes the batch in hand and exits."""

    def __init__(self, settings: Settings, inbox: Inbox, inventory: Inventory,
                 on_ingested: Callable[[Batch], None], *, process: bool | None = None,
                 on_room: Callable[[], None] = lambda: None):
        self.settings, self.inbox, self.inventory, self.on_ingested = settings, inbox, inventory, on_ingested
        self.on_room = on_room   # a batch started or ended: behind_s() went down
        self.process = settings.intake_process if process is None else process
        self._cv = threading.Condition()
        self._waiting: dict[int, int] = {}    # delivery -> alerts, acknowledged by this process and not yet taken in
        # Taken in before acknowledged() heard of them (the child can take a delivery in the moment it is committed),
        # or recovered from before this start: delivery -> when, forgotten after a minute.
        self._early: dict[int, float] = {}
        self.backlog = 0
        self.in_hand = 0   # alerts of the batch the loop is taking in now
        self.rate: float | None = None   # alerts a second the loop took in, over its recent batches (None: none yet)
        self.stuck = ""   # why the batch in hand cannot be taken in yet (the store), for /healthz
        self._stopping = threading.Event()
        self._nudged = threading.Event()     # thread mode
        self._nudge_fd: int | None = None    # process mode: the write end of the child's nudge pipe
        self._child: Any = None
        self._thread: threading.Thread | None = None   # the loop (thread mode), or the results' reader (process mode)

    def start(self) -> None:
        """Start taking in (first whatever was stored before this start and never taken in); a no-op when running."""
        with self._cv:
            if self.alive():
                return
            self._stop_child()
            self._stopping.clear()
            self.in_hand = 0   # a loop that died mid-batch left its batch waiting
            if not self._waiting:   # what waits from before this start counts too (and is taken in first)
                try:
                    self._waiting = self.inbox.waiting()
                except Exception as exc:   # the store is down: the loop waits for it; the count is only late
                    log.warning("cannot count the inbox yet: %s", exc)
                self.backlog = sum(self._waiting.values())
            if self.process:
                atexit.register(self._stopping.set)   # the interpreter's exit ends the child: not worth an error
                # The thread that spawns the child is the one that reads its results, and lives as long as it:
                # PR_SET_PDEATHSIG fires when the spawning *thread* ends, not only when this process dies.
                spawned = threading.Event()
                self._thread = threading.Thread(target=self._run_child, args=(spawned,), name="ingester-results",
                                                daemon=True)
                self._thread.start()
                spawned.wait(60)
                return
            loop = IngestLoop(self.inbox, self.inventory, self.settings, report=self._done, stuck=self._set_stuck,
                              taking=self._taking)
            self._thread = threading.Thread(target=loop.run, args=(self._wait, self._stopping.is_set),
                                            name="ingester", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        """Finish the batch in hand; what waits stays in the store for the next start."""
        self._stopping.set()
        self._nudged.set()
        self._stop_child(timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _stop_child(self, timeout_s: float = 30) -> None:
        if self._nudge_fd is not None:
            os.close(self._nudge_fd)   # the child's end reads EOF: it finishes its batch and exits
            self._nudge_fd = None
        if self._child is not None:
            self._child.join(timeout_s)
            if self._child.is_alive():
                self._child.kill()
            self._child = None

    def alive(self) -> bool:
        if self.process and (self._child is None or not self._child.is_alive()):
            return False
        return self._thread is not None and self._thread.is_alive()

    def acknowledged(self, delivery_id: int, alerts: int) -> None:
        """A delivery is stored: count it, and nudge the loop."""
        with self._cv:
            fd = self._nudge_fd
            if self._early.pop(delivery_id, None) is not None:
                return
            self._waiting[delivery_id] = alerts
            self.backlog += alerts
        if fd is None:
            self._nudged.set()
            return
        try:
            os.write(fd, b"\0")
        except (BlockingIOError, OSError):   # full: the child has nudges enough; gone: start() brings it back
            pass

    def settle(self) -> None:
        """Replicas share the inbox: forget what another replica's ingester took in (this loop never reports it)."""
        with self._cv:
            ids = list(self._waiting)[:1000]
        if not ids:
            return
        done = self.inbox.taken_in(ids)
        with self._cv:
            for delivery_id in done & set(self._waiting):
                self.backlog -= self._waiting.pop(delivery_id)
            self._cv.notify_all()

    def wait_idle(self, timeout_s: float = 30) -> bool:
        """Block until everything acknowledged here is taken in (tests); False on timeout or with no loop running."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self.backlog:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def wait_taken_in(self, delivery_id: int, timeout_s: float) -> bool:
        """Block until this delivery (acknowledged here) is taken in; False on timeout or with no loop running."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while delivery_id in self._waiting:
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def behind_s(self, more: int = 0) -> float:
        """How long taking in what waits beyond the batch in hand (and `more` alerts) would take at the loop's recent
        rate (before it has one: a batch a second). The next batch is ready when this one is done, so the loop never
        waits for the webhook. 0 while it is stuck (the store): then only `intake_backlog_max` bounds the backlog."""
        if self.stuck:
            return 0.0
        return max(0, self.backlog - self.in_hand + more) / (self.rate or self.settings.intake_batch_alerts)

    def _taking(self, ids: list[int]) -> None:
        with self._cv:
            self.in_hand = sum(self._waiting.get(d, 0) for d in ids)
        self.on_room()

    def _wait(self, timeout_s: float) -> bool:
        nudged = self._nudged.wait(timeout_s)
        self._nudged.clear()
        return nudged

    def _set_stuck(self, why: str) -> None:
        self.stuck = why

    def _done(self, batch: Batch) -> None:
        self.inbox.moved(batch.moved_upto)
        now = time.monotonic()
        with self._cv:
            self.in_hand = alerts = 0
            for delivery_id in batch.taken:
                if delivery_id in self._waiting:
                    alerts += self._waiting.pop(delivery_id)
                else:
                    self._early[delivery_id] = now
            self.backlog -= alerts
            if alerts and batch.seconds > 0:   # recent batches count most: the rate moves with the batch size
                rate = alerts / batch.seconds
                self.rate = rate if self.rate is None else (self.rate + rate) / 2
            if len(self._early) > 10_000 or (self._early and next(iter(self._early.values())) < now - 60):
                self._early = {d: t for d, t in self._early.items() if t >= now - 60}
            self._cv.notify_all()
        self.on_room()
        self.on_ingested(batch)

    def _run_child(self, spawned: threading.Event) -> None:
        """Process mode: start the child, then hear what it says until it ends."""
        try:
            conn, theirs = _SPAWN.Pipe(duplex=False)
            nudges, nudge = _SPAWN.Pipe(duplex=False)
            self._child = _SPAWN.Process(target=_child_main, name="remediator-ingester", daemon=True,
                                         args=(self.settings, theirs, nudges, logging.getLogger().getEffectiveLevel()))
            self._child.start()
            theirs.close()
            nudges.close()
            os.set_blocking(nudge.fileno(), False)
            self._nudge_fd = os.dup(nudge.fileno())
            nudge.close()
        finally:
            spawned.set()
        while True:
            try:
                kind, what = conn.recv()
            except (EOFError, OSError):
                break
            if kind == "stuck":
                self._set_stuck(what)
                continue
            if kind == "taking":
                self._taking(what)
                continue
            try:
                self._done(what)
            except Exception:
                log.exception("after the ingester took in a batch")
        conn.close()
        with self._cv:
            self._cv.notify_all()
        if not self._stopping.is_set():
            log.error("the ingester process ended; the next webhook starts it again")


def _child_main(settings: Settings, results: Connection, nudges: Connection, level: int) -> None:
    """The ingester process: the loop over its own store connection, reporting to the parent over `results`."""
    try:   # die with the parent even mid-batch: a SIGKILL of serve must not leave a second ingester running
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C reaches the whole group: the parent stops us in order
    from remediator.engine import logs
    logs.configure(logging.getLevelName(level))
    store = open_store(settings)
    while True:   # started while the store is down (or restarted by the parent meanwhile): wait for it
        try:
            inbox = Inbox.open(settings, store)
            break
        except StoreUnavailable as exc:
            results.send(("stuck", exc.message))
            if nudges.poll(1.0) and not os.read(nudges.fileno(), 65536):
                return   # the parent stopped us
    closed = threading.Event()   # the nudge pipe's EOF: the parent stopped us, or died

    def wait(timeout_s: float) -> bool:
        """A nudge within `timeout_s` (drained); False on none, or once the pipe is closed."""
        if closed.is_set() or not nudges.poll(timeout_s):
            return False
        try:
            if os.read(nudges.fileno(), 65536):
                return True
        except OSError:
            pass
        closed.set()
        return False

    def stopping() -> bool:   # between batches too: a storm never leaves the loop idle long enough to see EOF
        wait(0)
        return closed.is_set()

    loop = IngestLoop(inbox, load_inventory(settings.inventory), settings, report=lambda b: results.send(("done", b)),
                      stuck=lambda why: results.send(("stuck", why)), taking=lambda ids: results.send(("taking", ids)))
    # What is loaded by now lives as long as the process: out of the collector's sight. A batch makes tens of thousands
    # of short-lived objects (freed by their counts, not by the collector), so collect less often too: together a
    # fifth more alerts a second (docs/benchmarks.md)
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        loop.run(wait, stopping)
    except (BrokenPipeError, EOFError):
        pass
    finally:
        store.engine.dispose()
        inbox.store.engine.dispose()
