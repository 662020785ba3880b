"""Operating remediator: the catalog, the audit trail, the circuit breaker, approvers, retention."""
from __future__ import annotations

import getpass
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import typer
from rich.table import Column, Table

from remediator.engine.catalog.loader import load_catalog, markdown_table
from remediator.engine.cli import common
from remediator.engine.cli.common import console
from remediator.engine.model.roles import Role
from remediator.engine.store import anchor, audit, checkpoint, retention

catalog_app = typer.Typer(help="The catalog of vetted playbooks.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
approvers_app = typer.Typer(help="People who may view (viewer), decide (approver) or also manage approvers (admin).",
                            no_args_is_help=True)
breaker_app = typer.Typer(help="The circuit breaker: repeated failed remediations pause automatic runs.",
                          no_args_is_help=True)
policy_app = typer.Typer(help="What the boundary learned: scopes it made approve-only after repeated failures "
                              "(it only ever tightens; an admin resets with `remediator breaker reset`).",
                         no_args_is_help=True)


@catalog_app.command("list")
def catalog_list(as_json: bool = typer.Option(False, "--json", help="machine-readable, with parameter schemas"),
                 markdown: bool = typer.Option(False, "--markdown", help="the README's table")) -> None:
    """List every catalog entry: parameters, risk class, what its dry run shows."""
    catalog = load_catalog(*common.settings().catalog_roots)
    if as_json:
        print(json.dumps([{"id": e.id, **e.meta.model_dump(mode="json"), "parameters": e.json_schema()}
                          for e in catalog], indent=2))
        return
    if markdown:
        print(markdown_table(catalog), end="")
        return
    # An id is what an operator types next (runbooks, policies): never cut, however narrow the terminal.
    ids = [e.id for e in catalog]
    table = Table(Column("entry", no_wrap=True, min_width=max(map(len, ids), default=5)),
                  Column("kind", no_wrap=True, min_width=len("remediation")),
                  Column("risk", no_wrap=True, min_width=len("approval")), Column("parameters", overflow="fold"),
                  Column("summary", overflow="fold"))
    for e in catalog:
        table.add_row(e.id, e.meta.kind, e.meta.risk, ", ".join(
            f"{p.name}{'' if p.required else '?'}" for p in e.params.values()), e.meta.summary)
    console.print(table)


@audit_app.command("verify")
def audit_verify(
    expect_head: list[str] = typer.Option([], "--expect-head", metavar="SEQ:HASH",
                                          help="a head exported earlier (`remediator audit head`); repeatable"),
    heads: Path | None = typer.Option(None, "--heads", metavar="FILE",
                                      help="every head in this file: the anchor file, or `journalctl -t "
                                           "remediator-audit` saved (- reads standard input)"),
) -> None:
    """Check the audit chain; exit 1 when an event was edited, removed or reordered, or when the chain no longer
    reaches a head exported earlier (its tail was cut off together with the head row)."""
    expect = anchor.parse_heads(" ".join(f"audit head {h}" for h in expect_head))
    if len(expect) != len(expect_head):
        raise typer.BadParameter(f"--expect-head {expect_head}: write each as SEQ:HASH (the 64 hex digits of "
                              "`remediator audit head`)")
    if heads is not None:
        text = sys.stdin.read() if str(heads) == "-" else _read(heads)
        found = anchor.parse_heads(text)
        if not found:
            raise typer.BadParameter(f"{heads}: no `audit head SEQ:HASH` line in it")
        expect += found
    settings = common.settings()
    report = audit.verify(common.store(settings), expect, checkpoint.signing_key(settings))
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    checked = f", {len(expect)} exported heads checked" if expect else ""
    if report.checkpoint:
        checked += (f" (pruned up to event {report.checkpoint} behind a signed checkpoint"
                    + (f"; {report.behind_checkpoint} of the heads fall there, vouched for only by its signature"
                       if report.behind_checkpoint else "") + ")")
    console.print(f"{report.events} events{checked}, chain {'intact' if report.ok else 'BROKEN'}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("head")
def audit_head() -> None:
    """Print the chain's head as `remediator audit head SEQ:HASH`: keep it elsewhere, check it later with --expect-head."""
    seq, digest = audit.head(common.store())
    print(anchor.LINE.format(seq=seq, hash=digest))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"{path}: {exc.strerror}") from None


@breaker_app.command("status")
def breaker_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Circuit-breaker scopes: open ones pause automatic runs (each run needs a person)."""
    from remediator.engine.decide import breaker
    rows = breaker.status(common.store())
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not any(r.open for r in rows):
        console.print("all closed: automatic runs are allowed where policy allows them")
    for r in rows:
        since = r.opened_at.isoformat(timespec="seconds") + "Z" if r.opened_at else "?"
        console.print(f"{r.scope}: {'OPEN since ' + since + ' — ' + r.reason if r.open else 'closed'}"
                      + (f" (last reset by {r.reset_by})" if r.reset_by else ""), markup=False)


@breaker_app.command("reset")
def breaker_reset(scope: str = typer.Argument(..., help="global, entry:<id>, or learned:<entry>|<group>|<alertname>"),
                  token: str = common.TOKEN) -> None:
    """Close an open scope (admin role); its failure count starts again from now."""
    from remediator.engine.decide import breaker
    settings = common.settings()
    view = breaker.reset(common.store(settings), common.identities(settings).authenticate(token), scope)
    console.print(f"{view.scope}: closed by {view.reset_by}")


@policy_app.command("status")
def policy_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Scopes (entry | inventory group | alertname) that repeated failures made approve-only, open or reset."""
    from remediator.engine.decide import breaker
    rows = [r for r in breaker.status(common.store()) if r.scope.startswith(breaker.LEARNED)]
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not rows:
        console.print("nothing learned yet: every scope follows policies/*.yml (and the circuit breaker)")
        return
    table = Table("scope", "state", "since", "why", "reset by")
    for r in rows:
        since = r.opened_at.isoformat(timespec="seconds") + "Z" if r.opened_at else ""
        table.add_row(r.scope.removeprefix(breaker.LEARNED), "approve-only" if r.open else "reset", since, r.reason,
                      r.reset_by or "")
    console.print(table)


@policy_app.command("suggest")
def policy_suggest(as_json: bool = typer.Option(False, "--json")) -> None:
    """Scopes people approved and that verified, never failing, `suggest_min_approved` times: the rule diff that would
    let them run without a person, and the past incidents it would have changed. Nothing is applied."""
    from remediator.engine.catalog.inventory import load_inventory
    from remediator.engine.decide import suggest
    settings = common.settings()
    found = suggest.suggest(common.store(settings), settings.policies_dir, load_catalog(*settings.catalog_roots),
                            load_inventory(settings.inventory), settings.suggest_min_approved)
    if as_json:
        print(json.dumps([s.model_dump() for s in found], indent=2))
        return
    if not found:
        console.print(f"no suggestion: no scope was approved and verified {settings.suggest_min_approved} times "
                      "without a failure")
    for s in found:
        console.print(f"[bold]{s.scope}[/bold]: approved and verified {s.approved_and_verified} times, never failed; "
                      f"rule {s.rule} in {s.file} could leave it to run without a person:")
        console.print(s.diff, markup=False, highlight=False)
        console.print(f"backtest: {len(s.changed)} past incidents would have run without a person: "
                      f"{', '.join(s.changed[:10]) or 'none'}{' …' if len(s.changed) > 10 else ''}")


_ADMIN_TOKEN = typer.Option(None, "--token", envvar="REMEDIATOR_APPROVER_TOKEN", show_envvar=True,
                            help="an admin's token, once an admin exists (the first people need none)")


@approvers_app.command("add")
def approvers_add(name: str, role: str = typer.Option("approver", help="viewer, approver or admin"),
                  slack: str = typer.Option(None, "--slack", metavar="USER_ID",
                                            help="their Slack member ID (U…): their clicks on an approval request's "
                                                 "buttons in Slack are their decisions"),
                  token: str = _ADMIN_TOKEN) -> None:
    """Add a person and print their token (once; the store keeps only its argon2 hash). Once an admin exists, it
    takes an admin's token, audited in their name."""
    people = common.identities(common.settings())
    who, token = people.add(name, role, by=people.acting_admin(token, "adding a person"), slack_user=slack)
    console.print(f"{who.name} ({who.role}): token [bold]{token}[/bold]", highlight=False)
    console.print("give it to them: it is not shown again. It logs in to /ui and is the Bearer token for the API.")


@approvers_app.command("list")
def approvers_list() -> None:
    """People with a token, and their roles."""
    table = Table("name", "role", "since", "slack")
    for row in common.identities(common.settings()).list():
        table.add_row(row["name"], row["role"], row["created_at"], row["slack_user"] or "-")
    console.print(table)


@approvers_app.command("remove")
def approvers_remove(name: str, token: str = _ADMIN_TOKEN) -> None:
    """Revoke a person's token (their past decisions stay in the audit trail). Once an admin exists, it takes an
    admin's token."""
    people = common.identities(common.settings())
    people.remove(name, by=people.acting_admin(token, "removing a person"))
    console.print(f"{name}: token revoked")


def prune(older_than: str = typer.Option(..., "--older-than", metavar="AGE",
                                         help="e.g. 30d, 12h: what is older goes (days d, hours h)"),
          incidents: bool = typer.Option(False, "--incidents", help="also closed incidents with their alerts, runs and "
                                         "approvals, and the audit events before them (behind a signed checkpoint; "
                                         "ship them first with `remediator audit export`)"),
          dry_run: bool = typer.Option(False, "--dry-run", help="count what would go; remove nothing"),
          token: str | None = typer.Option(None, "--token", envvar="REMEDIATOR_APPROVER_TOKEN", show_envvar=True,
                                           help="an admin's token (`remediator approvers add NAME --role admin`); "
                                                "not needed with --dry-run")) -> None:
    """Remove old bulk: delivery bodies taken in, notifications sent or given up, closed incidents' run artifacts;
    with --incidents, the old records too (never younger than 7 days, the audit events only as far as `audit
    export` shipped them). An admin's act, audited in their name. `audit verify` still holds afterwards.

    `serve` does this daily after `retention_days` (bulk) and `retention_incidents_days` (records)."""
    match = re.fullmatch(r"(\d+)([dh])", older_than.strip())
    if not match:
        raise typer.BadParameter(f"--older-than {older_than!r}: write a number and d or h, e.g. 30d")
    age = timedelta(days=int(match[1])) if match[2] == "d" else timedelta(hours=int(match[1]))
    settings = common.settings()
    by = "a dry run"
    if not dry_run:
        if token is None:
            raise typer.BadParameter("pruning removes records: give an admin's --token (or use --dry-run to count)")
        who = common.identities(settings).authenticate(token)
        who.require(Role.ADMIN, "prune what remediator keeps")
        by = who.name
    report = retention.prune(common.store(settings), age, incidents=incidents, dry_run=dry_run, by=by,
                             key=checkpoint.cutting_key(settings) if incidents and not dry_run else None)
    verb = "would prune" if dry_run else "pruned"
    records = f", {report.incidents} closed incidents, {report.audit_events} audit events" if incidents else ""
    console.print(f"{verb} what is older than {report.older_than.isoformat(timespec='seconds')}Z: "
                  f"{report.delivery_bodies} delivery bodies, {report.notifications} notifications, "
                  f"{report.run_dirs} run artifact directories{records}")
    if report.audit_unshipped:
        console.print(f"{report.audit_unshipped} older audit events stay until they are shipped: "
                      "`remediator audit export -o FILE`, then prune again")


@audit_app.command("export")
def audit_export(since: int = typer.Option(0, "--since", metavar="SEQ", help="only events after this one (the last "
                                           "seq shipped before)"),
                 output: Path | None = typer.Option(None, "--output", "-o", help="a file (default: standard output)")
                 ) -> None:
    """Write the audit events as JSON lines, oldest first (each with its hash and the one before it), for shipping
    to a log store (Elasticsearch, S3, ...). Resume with --since the last seq written."""
    store = common.store()
    out = output.open("w") if output else sys.stdout
    n = first = last = 0
    try:
        for event in audit.export(store, since):
            out.write(json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n")
            n, last = n + 1, event["seq"]
            first = first or last
        out.flush()
    finally:
        if output:
            out.close()
    if n:   # written out whole: a prune may now cut these (and this record of it is the next event)
        audit.mark_shipped(store, first, last, f"cli:{getpass.getuser()}")
    print(f"{n} events exported" + (f", the last {last}: resume with --since {last}" if n else ""), file=sys.stderr)
