"""`remediator serve`: the engine behind uvicorn. The web side adds this command to the engine's command line,
and this module's `main` is the console script, so remediator/engine/ never imports FastAPI or uvicorn."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import typer

from remediator.engine.cli import main as cli
from remediator.engine.cli.common import console
from remediator.engine.errors import ConfigError
from remediator.engine.settings import load_settings

__all__ = ["serve", "main"]


def serve(host: str = typer.Option(None, help="listen address (default 127.0.0.1; REMEDIATOR_HOST)"),
          port: int = typer.Option(None, help="listen port (default 8080; REMEDIATOR_PORT)"),
          workers: int = typer.Option(None, help="incidents worked on at once (REMEDIATOR_WORKERS)"),
          role: str = typer.Option(None, help="all, api (webhook, API, intake) or worker (works incidents); api and "
                                   "worker need PostgreSQL (REMEDIATOR_ROLE; docs/scaling.md)"),
          allow_unauthenticated: bool = typer.Option(False, "--allow-unauthenticated",
                                                     help="accept requests without a token: local experiments only"),
          log_level: str = typer.Option("info", help="uvicorn and engine log level"),
          access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                          help="a line for every HTTP request (method, path, status)")) -> None:
    """Serve the webhook and API, and work incidents: Alertmanager -> fix -> verify -> notify."""
    import uvicorn

    from remediator.api.app import create_app
    from remediator.engine import logs
    from remediator.engine.service import Engine
    from remediator.engine.store.leader import single_serve

    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers, "role": role}.items() if v is not None}
    if allow_unauthenticated:
        overrides["allow_unauthenticated"] = True
    settings = load_settings(**overrides)
    if not settings.tokens and not settings.allow_unauthenticated:
        raise ConfigError("no API token configured: set REMEDIATOR_TOKENS=<token>[,<next token>] (or tokens: in "
                          "the REMEDIATOR_CONFIG file), or pass --allow-unauthenticated for a local run")
    logs.configure(log_level)
    if tree := os.environ.get("REMEDIATOR_CONFIG"):   # copies never get a release's fixes by themselves: say so
        from remediator.engine.config_tree import drift
        for d in drift(Path(tree).parent):
            if d.state == "behind":
                console.print(f"[yellow]warning: {d.path} is behind this release's (the shipped one changed since "
                              "it was copied): `remediator config diff`[/yellow]")
    claim = single_serve(settings.db_url)   # held until this process ends
    engine = Engine.load(settings)
    if not settings.tokens:
        console.print("[yellow]warning: serving WITHOUT authentication (--allow-unauthenticated)[/yellow]")
    console.print(f"remediator serving on http://{settings.host}:{settings.port} — inventory {settings.inventory}, "
                  f"{len(engine.catalog)} catalog entries, store {settings.db_url}")
    app = create_app(engine)
    # What is loaded by now (FastAPI, pydantic, SQLAlchemy, the catalog) lives as long as the process: out of the
    # collector's sight, so a full collection no longer walks it. It took ~80 ms, in the middle of some webhook's
    # answer (bench.intake: the 1-alert p99, docs/benchmarks.md).
    gc.freeze()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level.lower(), access_log=access_log)
    del claim


cli.app.command("serve", rich_help_panel=cli.OPERATE)(serve)


def main() -> None:
    """The `remediator` console script: every command, serve included."""
    cli.main(cli.app)
