"""Setting remediator up: `remediator init DIR`, `remediator config diff` and `remediator db upgrade|current`."""
from __future__ import annotations

import os
from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from remediator.engine.cli import common
from remediator.engine.config_tree import DOCS, init_tree
from remediator.engine.errors import ConfigError
from remediator.engine.store.db import open_store

db_app = typer.Typer(help="The store's schema: remediator applies its migrations at start unless "
                          "migrate_on_start is false; then these do it by hand.", no_args_is_help=True)


def init(directory: Path = typer.Argument(..., help="a new or empty directory, e.g. /etc/remediator"),
         systemd: bool = typer.Option(False, "--systemd", help="also write remediator.service (data under "
                                      "/var/lib/remediator) for `systemctl`; docs/operating.md")) -> None:
    """Write an operator-owned config tree: settings (with a new token), inventory, policies, runbooks, an empty
    catalog overlay. serve uses it with REMEDIATOR_CONFIG=DIR/remediator.yml."""
    report = init_tree(directory, systemd=systemd)
    for path in report.written:
        typer.echo(f"wrote {path}")
    typer.echo(f"\nthe API token (also in {report.config.name}; give it to Alertmanager's credentials_file):\n"
               f"  {report.token}\n(the whole string is the bearer token; `{report.token.partition(':')[0]}` is its "
               "public name, which each delivery and the audit record as the sender)\n\n"
               f"next: edit {report.config.parent / 'inventory.yml'} (your hosts and allow-lists), then\n"
               f"  REMEDIATOR_CONFIG={report.config} remediator serve\n"
               f"the first host, step by step: {DOCS / 'operating.md'} (\"The first host\")")
    if report.unit:
        tree = report.config.parent
        typer.echo(f"\nas a service: useradd --system --home-dir /var/lib/remediator remediator\n"
                   f"  the service reads the tree, never writes it: chgrp -R remediator {tree}; "
                   f"chmod -R g+rX,g-w {tree}; chmod 0640 {report.config}\n"
                   f"  cp {report.unit} /etc/systemd/system/; systemctl daemon-reload; systemctl enable --now remediator")


config_app = typer.Typer(help="Your config tree (`remediator init`) against what this release ships.",
                         no_args_is_help=True)


def operator_tree(tree: Path | None) -> Path:
    """The tree given, else the one REMEDIATOR_CONFIG is in."""
    if tree is not None:
        return tree
    config = os.environ.get("REMEDIATOR_CONFIG")
    if not config:
        raise ConfigError("which config tree? pass --tree DIR (where `remediator init` wrote it) or set REMEDIATOR_CONFIG")
    return Path(config).parent


@config_app.command("diff")
def config_diff(tree: Path = typer.Option(None, "--tree", help="the tree `remediator init` wrote (default: where "
                                          "REMEDIATOR_CONFIG is)"),
                noted: bool = typer.Option(False, "--noted", help="you merged what changed: note the shipped files "
                                           "as they are now")) -> None:
    """Your copied policies and runbooks against this release's: yours, the same, or behind (the shipped one changed
    since you copied it: a fix you do not have, shown as a diff). Exit 1 when one is behind."""
    import difflib

    from remediator.engine.config_tree import drift, note_shipped, shipped_file
    where = operator_tree(tree)
    if not (where / "policies").is_dir():
        raise ConfigError(f"{where}: no policies/ here; is it the tree `remediator init` wrote?")
    if noted:
        note_shipped(where)
        typer.echo(f"noted the shipped policies and runbooks of this release in {where}")
        return
    found = drift(where)
    for d in found:
        typer.echo(f"{d.state:8} {d.path}: {d.says}")
        if d.state in ("behind", "differs"):
            mine, shipped = (where / d.path).read_text().splitlines(), shipped_file(d.path).read_text().splitlines()
            for line in difflib.unified_diff(mine, shipped, f"yours/{d.path}", f"shipped/{d.path}", lineterm=""):
                typer.echo(f"    {line}")
    if any(d.state in ("behind", "differs") for d in found):
        raise typer.Exit(1)


@db_app.command("current")
def db_current() -> None:
    """Where the store's schema stands against this remediator's newest migration (exit 1 when behind)."""
    settings = common.settings()
    current, head = open_store(settings).revisions()
    where = make_url(settings.db_url).render_as_string(hide_password=True)
    typer.echo(f"{where}: revision {current or 'none (empty)'}, newest {head}: "
               f"{'up to date' if current == head else 'behind: run `remediator db upgrade`'}")
    if current != head:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration the store lacks (run it once, from one machine, before starting the new version)."""
    settings = common.settings()
    store = open_store(settings)
    before, head = store.revisions()
    store.migrate()
    if settings.inbox_url != settings.db_url:   # SQLite: the webhook inbox is a file of its own beside the store
        from remediator.engine.store.db import Store
        Store(settings.inbox_url, settings.sqlite_synchronous).migrate()
    typer.echo(f"store: {before or 'none (empty)'} -> {head}")
