"""Every test's Engine, built from parts that are loaded once per test process (remediator/engine/parts.py).

`new_engine(settings, ...)` is `Engine.load(settings, ...)` without the cost that made unit tests slow: a SQLite store
(and its inbox) starts as a copy of one migrated once, instead of two Alembic migrations per test; the shipped
catalog, inventory and policy are loaded once, unless the settings name others; and SQLite is not fsynced at every
commit unless the test asks (durability against a machine's crash is not what an in-process test can see).
"""
from __future__ import annotations

import functools
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from remediator.engine.catalog.inventory import Inventory, load_inventory
from remediator.engine.catalog.loader import Catalog, load_catalog
from remediator.engine.decide.policy import Policy, load_policy
from remediator.engine.intake.inbox import Inbox
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.db import open_store

__all__ = ["new_engine", "shipped"]

_STORE_FILES = ("remediator.db", "remediator-inbox.db")


@functools.cache
def shipped() -> tuple[Settings, Catalog, Inventory, Policy]:
    """The shipped catalog, inventory and policy, loaded once per test process (with the settings that name them)."""
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="remediator-shipped-")))
    catalog = load_catalog(*settings.catalog_roots)
    inventory = load_inventory(settings.inventory)
    return settings, catalog, inventory, load_policy(settings.policies_dir, catalog, inventory)


@functools.cache
def _template() -> Path:
    """A SQLite store and its inbox, migrated once."""
    where = Path(tempfile.mkdtemp(prefix="remediator-store-template-"))
    settings = Settings(data_dir=where)
    store = open_store(settings)
    store.prepare(True)
    inbox = Inbox.open(settings, store)
    for opened in {inbox.store, store}:
        opened.engine.dispose()
    return where


def _copy_store(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in _STORE_FILES:
        src, dst = sqlite3.connect(_template() / name), sqlite3.connect(data_dir / name)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()


def new_engine(settings: Settings, **parts: Any) -> Engine:
    """An Engine (not started) over `settings`, with `parts` (executor, clock, query, ...) handed in; None: the real one."""
    parts = {k: v for k, v in parts.items() if v is not None}
    if "sqlite_synchronous" not in settings.model_fields_set:
        settings = settings.model_copy(update={"sqlite_synchronous": "NORMAL"})
    if settings.database_url is None and settings.migrate_on_start and not (settings.data_dir / _STORE_FILES[0]).exists():
        _copy_store(settings.data_dir)
    shipped_settings, catalog, inventory, policy = shipped()
    if settings.catalog_roots == shipped_settings.catalog_roots:
        parts.setdefault("catalog", catalog)
        if settings.inventory == shipped_settings.inventory:
            parts.setdefault("inventory", inventory)
            if settings.policies_dir == shipped_settings.policies_dir:
                parts.setdefault("policy", policy)
    return Engine.load(settings, **parts)
