"""The store: SQLAlchemy 2 over SQLite (WAL, the embedded default) or PostgreSQL.

Writes go through `Store.write()`: one transaction, serialized in this process, and on SQLite
opened with BEGIN IMMEDIATE so a transaction that reads then writes never deadlocks on upgrade.
Reads go through `Store.read()`, which on SQLite takes no lock at all (WAL), so a reader never waits for a
writer in another process (the ingester's) nor holds one up.
The schema is owned by Alembic (remediator/engine/store/migrations); `Store.migrate()` brings it to head. The
tables are in remediator/engine/store/tables.py.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from remediator.engine.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from remediator.engine.settings import Settings

__all__ = ["Store", "open_store"]


class Store:
    """Engine, sessions and the single write path."""

    def __init__(self, url: str, sqlite_synchronous: str = "FULL", audit_sinks: list[Callable[[int, str], None]] | None = None):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                # The store holds alerts, evidence and approvers' hashes: the owner's alone. SQLite gives its
                # -wal and -shm files the database file's mode.
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            self._sqlite_setup(sqlite_synchronous)
        # audit_sinks: where each new head of the audit chain goes after its commit (remediator/engine/store/anchor.py)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info={"audit_sinks": audit_sinks or []})
        self.anchored = bool(audit_sinks)
        self._read_sessions = sessionmaker(self.engine.execution_options(remediator_read=True), expire_on_commit=False)
        self._write_lock = threading.RLock()

    def _sqlite_setup(self, synchronous: str) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None   # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so a 2xx is only sent for what survives a
            # power cut. NORMAL trades the last commits on power loss (not on a crash) for speed.
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn):
            # A read takes no lock (WAL: readers never wait for the writer, nor it for them); a write takes the
            # write lock at its start, so it never fails to upgrade halfway.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("remediator_read") else "BEGIN IMMEDIATE")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from remediator.engine.store.migrations import upgrade
        upgrade(self.engine)

    def revisions(self) -> tuple[str | None, str]:
        """(the schema's Alembic revision, None when empty; the newest this remediator knows)."""
        from remediator.engine.store.migrations import revisions
        return revisions(self.engine)

    def prepare(self, migrate: bool) -> None:
        """Ready for use: migrated to the newest revision, or (migrate False: the operator migrates by hand)
        checked to be there already."""
        if migrate:
            self.migrate()
            return
        current, head = self.revisions()
        if current != head:
            raise ConfigError(f"the store is at revision {current or 'none (empty)'}, this remediator needs {head}: "
                              "run `remediator db upgrade` (migrate_on_start is false)")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only (on SQLite it takes no lock: writing in it is a bug); StoreUnavailable when the
        database does not answer."""
        try:
            with self._read_sessions() as session:
                yield session
        except DBAPIError as exc:
            if not _unavailable(exc):
                raise
            raise StoreUnavailable(f"the store cannot be read now: {exc.orig}") from None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction; StoreUnavailable when the database cannot take it."""
        with self._write_lock:
            try:
                with self._sessions() as session, session.begin():
                    yield session
            except DBAPIError as exc:
                if not _unavailable(exc):
                    raise
                raise StoreUnavailable(f"the store cannot take writes now: {exc.orig}") from None


def _unavailable(exc: DBAPIError) -> bool:
    """The database cannot serve now (locked, down, disk full, read-only, or the connection was lost: PostgreSQL
    restarted), as opposed to refusing this statement: the caller retries later, and nothing is marked failed."""
    return isinstance(exc, (OperationalError, InternalError, InterfaceError)) or exc.connection_invalidated


def open_store(settings: Settings) -> Store:
    """The store the settings name, exporting its audit heads where they say (remediator/engine/store/anchor.py)."""
    from remediator.engine.store.anchor import sinks
    return Store(settings.db_url, settings.sqlite_synchronous, sinks(settings.audit_anchor_syslog, settings.audit_anchor_file))
