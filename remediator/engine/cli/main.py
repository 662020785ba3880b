"""The `remediator` command line: its commands, gathered here. Errors become one clear line and exit code 2,
never a traceback. `remediator serve` is added by remediator/api/serve.py (the console script's entry point), so that
remediator/engine/ never imports the web framework."""
from __future__ import annotations

import sys

import typer

from remediator.engine.cli import incidents, install, ops, predict, remote, replicas
from remediator.engine.errors import RemediatorError
from remediator.engine.lab import cli as lab

__all__ = ["app", "main", "OPERATE", "LAB"]

app = typer.Typer(help="remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _root(url: str = typer.Option(None, "--url", envvar="REMEDIATOR_URL", show_envvar=True, metavar="URL",
                                  help="a running remediator serve: `approvals` and `incidents list|show` ask it over "
                                       "HTTP with your token (REMEDIATOR_APPROVER_TOKEN), not this host's store")) -> None:
    """remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes."""
    remote.use(url)


# `--help` shows an operator's commands apart from the lab's and the developers' (an operator's first day mixed them).
OPERATE, LAB = "Operate", "Lab, demo and evaluation (not for production hosts)"
app.command("init", rich_help_panel=OPERATE)(install.init)
app.add_typer(install.db_app, name="db", rich_help_panel=OPERATE)
app.add_typer(install.config_app, name="config", rich_help_panel=OPERATE)
app.add_typer(incidents.incidents_app, name="incidents", rich_help_panel=OPERATE)
app.add_typer(incidents.approvals_app, name="approvals", rich_help_panel=OPERATE)
app.add_typer(ops.approvers_app, name="approvers", rich_help_panel=OPERATE)
app.command("plan", rich_help_panel=OPERATE)(predict.plan)
app.add_typer(ops.catalog_app, name="catalog", rich_help_panel=OPERATE)
app.add_typer(ops.policy_app, name="policy", rich_help_panel=OPERATE)
app.add_typer(ops.breaker_app, name="breaker", rich_help_panel=OPERATE)
app.command("pause", rich_help_panel=OPERATE)(replicas.pause)
app.command("resume", rich_help_panel=OPERATE)(replicas.resume)
app.command("claims", rich_help_panel=OPERATE)(replicas.claims)
app.add_typer(ops.audit_app, name="audit", rich_help_panel=OPERATE)
app.command("prune", rich_help_panel=OPERATE)(ops.prune)
app.add_typer(predict.llm_app, name="llm", rich_help_panel=OPERATE)
app.command("demo", rich_help_panel=LAB)(lab.demo)
app.add_typer(lab.lab_app, name="lab", rich_help_panel=LAB)
app.add_typer(lab.chaos_app, name="chaos", rich_help_panel=LAB)
app.add_typer(lab.scenarios_app, name="scenarios", rich_help_panel=LAB)
app.command("eval", rich_help_panel=LAB)(predict.eval_cmd)


def main(cli: typer.Typer = app) -> None:
    """Run the command line: domain errors are one line on stderr and exit code 2."""
    try:
        cli()
    except RemediatorError as exc:
        print(f"remediator: {exc.message}", file=sys.stderr)
        sys.exit(2)
