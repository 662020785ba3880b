"""Setting remediator up: `remediator init DIR` and `remediator db upgrade|current`."""
from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from remediator.engine.cli import common
from remediator.engine.config_tree import init_tree
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
               f"  {report.token}\n\nnext: edit {report.config.parent / 'inventory.yml'} (your hosts and "
               f"allow-lists), then\n  REMEDIATOR_CONFIG={report.config} remediator serve")
    if report.unit:
        tree = report.config.parent
        typer.echo(f"\nas a service: useradd --system --home-dir /var/lib/remediator remediator\n"
                   f"  the service reads the tree, never writes it: chgrp -R remediator {tree}; "
                   f"chmod -R g+rX,g-w {tree}; chmod 0640 {report.config}\n"
                   f"  cp {report.unit} /etc/systemd/system/; systemctl daemon-reload; systemctl enable --now remediator")


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
