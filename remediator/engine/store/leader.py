"""One at a time across replicas: PostgreSQL advisory locks; and one serve per SQLite store.

`Leadership` is a session-level advisory lock held on a connection of its own: the replica holding it runs the
housekeeper's jobs (approval expiry, the outbox, retention, the audit check, taking over orphaned incidents). When
that replica dies its connection closes, PostgreSQL frees the lock, and another replica's next try takes it.
`serialize()` is the transaction-level kind, for work every replica does but never two at once (the ingester's
batches). On SQLite there is one replica by construction (`single_serve()` refuses a second), so both are no-ops.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from remediator.engine.errors import ConfigError
from remediator.engine.store.db import Store

__all__ = ["Leadership", "serialize", "single_serve", "HOUSEKEEPER", "INGEST"]

log = logging.getLogger(__name__)
# Advisory lock keys (MIGRATE_LOCK, 7_261_001, is in remediator/engine/store/migrations/__init__.py).
HOUSEKEEPER = 7_261_002
INGEST = 7_261_003


class Leadership:
    """This replica leads while its own connection holds the advisory lock `key`; on SQLite it always does."""

    def __init__(self, store: Store, key: int):
        self.store, self.key = store, key
        self._conn: Connection | None = None

    def held(self) -> bool:
        """Take the lock if it is free, or check it is still ours (the connection is alive); False otherwise."""
        if self.store.is_sqlite:
            return True
        try:
            if self._conn is not None:
                self._conn.execute(text("SELECT 1"))
                return True
            conn = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar():
                self._conn = conn
                log.info("this replica now runs the singletons of lock %d", self.key)
                return True
            conn.close()
            return False
        except DBAPIError as exc:   # the store went away: so did the lock, with the connection
            log.warning("lost the singleton lock %d: %s", self.key, exc.orig)
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()   # closing the connection is what frees a session lock for sure
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None


def serialize(session: Session, key: int) -> None:
    """The rest of this transaction runs alone among the replicas (PostgreSQL); SQLite's write lock already does."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def single_serve(url: str) -> IO[str] | None:
    """On SQLite, this serve's claim to the store at `url` (keep the handle open); ConfigError when another serve
    has it. A lock on a file beside the database: the kernel frees it when the process dies, however it dies."""
    if not url.startswith("sqlite"):
        return None
    path = url.removeprefix("sqlite:///")
    if not path or path == ":memory:":
        return None
    lock = Path(path + ".serve.lock")
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)   # a first start: the store makes it too, later
    handle = lock.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"another remediator serve (pid {other}) already uses the SQLite store {path}: more than one "
                          "replica needs a shared PostgreSQL (database_url: postgresql+psycopg://...; docs/scaling.md)"
                          ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
