"""Group commit: items that arrive while a transaction commits are written together in the next one (the webhook's
acknowledgements: one fsync per batch under a storm, not one per request)."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from remediator.engine.errors import StoreUnavailable
from remediator.engine.store.db import Store

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Items that arrive while a transaction is committing are written together in the next one.

    The fsync that makes an acknowledgement durable is the cost of intake; under a storm one fsync then covers
    every item waiting, instead of one each. One writer thread does the writing (started with the first item, and
    again if it ever died), so a caller hands its item over and waits on a future: an async caller (the webhook)
    without a thread of its own, a plain caller with `submit()`. Every caller hears only after its own item is
    committed."""

    def __init__(self, store: Store, write: Callable[[Session, list[T]], list[R]]):
        self.store, self.write = store, write
        self._cv = threading.Condition()
        self._waiting: list[tuple[T, Future[R]]] = []
        self._writer: threading.Thread | None = None

    def submit(self, item: T) -> R:
        """Write this item (with whatever else is waiting); returns once it is committed."""
        return self.hand_over(item).result()

    def hand_over(self, item: T) -> Future[R]:
        """Queue this item for the next transaction; the future is its result once committed."""
        mine: Future[R] = Future()
        with self._cv:
            self._waiting.append((item, mine))
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="group-commit", daemon=True)
                self._writer.start()
            self._cv.notify()
        return mine

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting:
                    if not self._cv.wait(60):   # idle a minute: end; the next item starts a writer again
                        if not self._waiting:
                            self._writer = None
                            return
                batch, self._waiting = self._waiting, []
            self._commit(batch)

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
