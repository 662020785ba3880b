"""What every command shares: the console, settings, the store, the approver token option."""
from __future__ import annotations

import typer
from rich.console import Console

from remediator.engine.people.identities import Identities
from remediator.engine.settings import Settings, load_settings
from remediator.engine.store.db import Store, open_store

__all__ = ["console", "settings", "store", "identities", "TOKEN"]

console = Console()
TOKEN = typer.Option(..., "--token", envvar="REMEDIATOR_APPROVER_TOKEN", show_envvar=True,
                     help="your approver token (from `remediator approvers add`); decisions are made in its name")


def settings() -> Settings:
    return load_settings()


def store(current: Settings | None = None) -> Store:
    current = current or load_settings()
    s = open_store(current)
    s.prepare(current.migrate_on_start)
    return s


def identities(current: Settings) -> Identities:
    return Identities(store(current), [t.get_secret_value() for t in current.tokens])
