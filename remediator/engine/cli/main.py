"""The `remediator` command line: its commands, gathered here. Errors become one clear line and exit code 2,
never a traceback. `remediator serve` is added by remediator/api/serve.py (the console script's entry point), so that
remediator/engine/ never imports the web framework."""
from __future__ import annotations

import sys

import typer

from remediator.engine.cli import incidents, install, ops, predict, remote, replicas
from remediator.engine.errors import RemediatorError
from remediator.engine.lab import cli as lab

__all__ = ["app", "main"]

app = typer.Typer(help="remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _root(url: str = typer.Option(None, "--url", envvar="REMEDIATOR_URL", show_envvar=True, metavar="URL",
                                  help="a running remediator serve: `approvals` and `incidents list|show` ask it over "
                                       "HTTP with your token (REMEDIATOR_APPROVER_TOKEN), not this host's store")) -> None:
    """remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes."""
    remote.use(url)


app.add_typer(ops.breaker_app, name="breaker")
app.add_typer(incidents.approvals_app, name="approvals")
app.add_typer(ops.approvers_app, name="approvers")
app.add_typer(ops.catalog_app, name="catalog")
app.add_typer(incidents.incidents_app, name="incidents")
app.add_typer(lab.chaos_app, name="chaos")
app.add_typer(lab.lab_app, name="lab")
app.add_typer(lab.scenarios_app, name="scenarios")
app.add_typer(ops.audit_app, name="audit")
app.add_typer(ops.policy_app, name="policy")
app.add_typer(predict.llm_app, name="llm")
app.add_typer(install.db_app, name="db")
app.command("init")(install.init)
app.command("plan")(predict.plan)
app.command("prune")(ops.prune)
app.command("eval")(predict.eval_cmd)
app.command("demo")(lab.demo)
app.command("pause")(replicas.pause)
app.command("resume")(replicas.resume)
app.command("claims")(replicas.claims)


def main(cli: typer.Typer = app) -> None:
    """Run the command line: domain errors are one line on stderr and exit code 2."""
    try:
        cli()
    except RemediatorError as exc:
        print(f"remediator: {exc.message}", file=sys.stderr)
        sys.exit(2)
