"""The `remediator` command line. Errors become one clear line and exit code 2, never a traceback."""
from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from engine import audit, lab
from engine.catalog import load_catalog, markdown_table
from engine.errors import RemediatorError
from engine.settings import Settings, load_settings
from engine.store import Store

app = typer.Typer(help="remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
catalog_app = typer.Typer(help="The catalog of vetted playbooks.", no_args_is_help=True)
lab_app = typer.Typer(help="The lab fleet: Podman hosts from inventory/lab.yml.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(lab_app, name="lab")
app.add_typer(audit_app, name="audit")
console = Console()


def _settings() -> Settings:
    return load_settings()


@catalog_app.command("list")
def catalog_list(as_json: bool = typer.Option(False, "--json", help="machine-readable, with parameter schemas"),
                 markdown: bool = typer.Option(False, "--markdown", help="the README's table")) -> None:
    """List every catalog entry: parameters, risk class, what its dry run shows."""
    catalog = load_catalog(_settings().playbooks_dir)
    if as_json:
        print(json.dumps([{"id": e.id, **e.meta.model_dump(mode="json"), "parameters": e.json_schema()}
                          for e in catalog], indent=2))
        return
    if markdown:
        print(markdown_table(catalog), end="")
        return
    table = Table("entry", "kind", "risk", "parameters", "summary")
    for e in catalog:
        table.add_row(e.id, e.meta.kind, e.meta.risk, ", ".join(
            f"{p.name}{'' if p.required else '?'}" for p in e.params.values()), e.meta.summary)
    console.print(table)


@lab_app.command("up")
def lab_up() -> None:
    """Start fresh lab containers and wait until each has booted."""
    for h in lab.up(_settings().inventory):
        console.print(f"{h.name}: up (container {h.container}, webapp on 127.0.0.1:{h.port})")


@lab_app.command("down")
def lab_down() -> None:
    """Remove the lab containers."""
    gone = lab.down(_settings().inventory)
    console.print(f"removed {len(gone)} lab containers")


@lab_app.command("status")
def lab_status() -> None:
    """Show each lab host's container state."""
    for name, state in lab.status(_settings().inventory).items():
        console.print(f"{name}: {state}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit chain; exit 1 when an event was edited, removed or reordered."""
    settings = _settings()
    store = Store(settings.db_url, settings.sqlite_synchronous)
    store.migrate()
    report = audit.verify(store)
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    console.print(f"{report.events} events, chain {'intact' if report.ok else 'BROKEN'}")
    raise typer.Exit(0 if report.ok else 1)


def main() -> None:
    """Console-script entry point: domain errors are one line on stderr and exit code 2."""
    try:
        app()
    except RemediatorError as exc:
        print(f"remediator: {exc.message}", file=sys.stderr)
        sys.exit(2)
