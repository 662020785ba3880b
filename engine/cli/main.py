"""The `remediator` command line. Errors become one clear line and exit code 2, never a traceback."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from engine.catalog.loader import load_catalog, markdown_table
from engine.errors import ConfigError, RemediatorError
from engine.lab import fleet
from engine.settings import Settings, load_settings
from engine.store import audit
from engine.store.db import Store

app = typer.Typer(help="remediator: Alertmanager alerts to vetted, checked, audited Ansible fixes.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
catalog_app = typer.Typer(help="The catalog of vetted playbooks.", no_args_is_help=True)
lab_app = typer.Typer(help="The lab fleet: Podman hosts from inventory/lab.yml.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
chaos_app = typer.Typer(help="Chaos drills on the lab: the real Prometheus -> Alertmanager -> remediator chain.",
                        no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents in the store: what came in and what was done.", no_args_is_help=True)
approvals_app = typer.Typer(help="Approval requests: the dry run a person decides on.", no_args_is_help=True)
approvers_app = typer.Typer(help="People who may view (viewer), decide (approver) or also manage approvers (admin).",
                            no_args_is_help=True)
breaker_app = typer.Typer(help="The circuit breaker: repeated failed remediations pause automatic runs.",
                          no_args_is_help=True)
app.add_typer(breaker_app, name="breaker")
app.add_typer(approvals_app, name="approvals")
app.add_typer(approvers_app, name="approvers")
app.add_typer(catalog_app, name="catalog")
app.add_typer(incidents_app, name="incidents")
app.add_typer(chaos_app, name="chaos")
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


def _monitoring(settings: Settings):
    from engine.lab.monitoring import Monitoring
    return Monitoring.for_lab(settings)


@lab_app.command("up")
def lab_up(monitoring: bool = typer.Option(True, "--monitoring/--no-monitoring",
                                           help="also start the lab's Prometheus and Alertmanager")) -> None:
    """Start fresh lab containers (and Prometheus + Alertmanager posting to remediator) and wait for them."""
    settings = _settings()
    hosts = fleet.up(settings.inventory)
    for h in hosts:
        console.print(f"{h.name}: up (container {h.container}, webapp on 127.0.0.1:{h.port})")
    if monitoring:
        token = settings.tokens[0].get_secret_value() if settings.tokens else "example-token"
        for m in _monitoring(settings).up(hosts, token):
            console.print(f"{m.name}: up on {m.url} (pid {m.pid})")
        console.print(f"alerts go to http://127.0.0.1:{settings.port}/webhook/alertmanager; for evidence and verify, "
                      f"serve with REMEDIATOR_PROMETHEUS_URL={_monitoring(settings).url('prometheus')} "
                      f"REMEDIATOR_ALERTMANAGER_URL={_monitoring(settings).url('alertmanager')}")


@lab_app.command("down")
def lab_down() -> None:
    """Remove the lab containers and stop the lab's Prometheus and Alertmanager."""
    settings = _settings()
    gone = fleet.down(settings.inventory)
    stopped = _monitoring(settings).down()
    console.print(f"removed {len(gone)} lab containers" + (f"; stopped {', '.join(stopped)}" if stopped else ""))


@lab_app.command("status")
def lab_status() -> None:
    """Show each lab host's container state, and the lab's Prometheus and Alertmanager."""
    settings = _settings()
    for name, state in fleet.status(settings.inventory).items():
        console.print(f"{name}: {state}")
    for m in _monitoring(settings).status():
        console.print(f"{m.name}: {'running on ' + m.url if m.running else 'stopped'}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit chain; exit 1 when an event was edited, removed or reordered."""
    report = audit.verify(_store())
    for problem in report.problems:
        console.print(f"[red]{problem}[/red]")
    console.print(f"{report.events} events, chain {'intact' if report.ok else 'BROKEN'}")
    raise typer.Exit(0 if report.ok else 1)


@app.command("serve")
def serve(host: str = typer.Option(None, help="listen address (default 127.0.0.1; REMEDIATOR_HOST)"),
          port: int = typer.Option(None, help="listen port (default 8080; REMEDIATOR_PORT)"),
          workers: int = typer.Option(None, help="incidents worked on at once (REMEDIATOR_WORKERS)"),
          allow_unauthenticated: bool = typer.Option(False, "--allow-unauthenticated",
                                                     help="accept requests without a token: local experiments only"),
          log_level: str = typer.Option("info", help="uvicorn and engine log level")) -> None:
    """Serve the webhook and API, and work incidents: Alertmanager -> fix -> verify -> notify."""
    import uvicorn

    from api.app import create_app
    from engine import logs
    from engine.service import Engine

    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    if allow_unauthenticated:
        overrides["allow_unauthenticated"] = True
    settings = load_settings(**overrides)
    if not settings.tokens and not settings.allow_unauthenticated:
        raise ConfigError("no API token configured: set REMEDIATOR_TOKENS=<token>[,<next token>] (or tokens: in "
                          "the REMEDIATOR_CONFIG file), or pass --allow-unauthenticated for a local run")
    logs.configure(log_level)
    engine = Engine(settings)
    if not settings.tokens:
        console.print("[yellow]warning: serving WITHOUT authentication (--allow-unauthenticated)[/yellow]")
    console.print(f"remediator serving on http://{settings.host}:{settings.port} — inventory {settings.inventory}, "
                  f"{len(engine.catalog)} catalog entries, store {settings.db_url}")
    uvicorn.run(create_app(engine), host=settings.host, port=settings.port, log_level=log_level.lower(),
                access_log=False)


@incidents_app.command("list")
def incidents_list(state: str = typer.Option(None, help="only incidents in this state"),
                   limit: int = typer.Option(50, min=1, max=1000),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """The newest incidents, with state and what was done."""
    from engine.store.queries import list_incidents
    rows = list_incidents(_store(), state, limit)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("id", "state", "alert", "host", "entry", "reason")
    for r in rows:
        table.add_row(r.id, r.state, r.alertname, r.host or "-", r.entry or "-", r.reason[:100])
    console.print(table)


def _print_transcript(t: dict) -> None:
    """The model's conversation in one line per tool call (the whole of it is in --json)."""
    console.print(f"model {t['model']} at {t['base_url']}: {t['rounds']} rounds, {t['prompt_tokens']}+{t['completion_tokens']} "
                  f"tokens, {sum(t['latency_ms'])} ms; outcome {t['outcome']}"
                  + (f" ({t['fallback_reason']})" if t.get("fallback_reason") else ""), markup=False)
    for c in t["calls"]:
        console.print(f"  round {c['round']}: {c['name']}({c['arguments'][:120]})"
                      + ("" if c["valid"] else f"  refused: {c['error'][:160]}"), markup=False)


@incidents_app.command("show")
def incidents_show(incident_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One incident: alerts, evidence, proposal, decision, dry run, runs, notifications, audit timeline."""
    from engine.store.queries import get_incident
    d = get_incident(_store(), incident_id)
    if as_json:
        print(d.model_dump_json(indent=2))
        return
    console.print(f"[bold]{d.id}[/bold]  {d.alertname} on {d.host or '?'}  severity {d.severity}  "
                  f"state [bold]{d.state}[/bold]  firing={d.firing}")
    console.print(f"reason: {d.reason}", markup=False)
    if d.proposal:
        console.print(f"proposal: {d.proposal['entry']} {json.dumps(d.proposal['params'])} on {d.proposal['hosts']} "
                      f"({d.proposal['planner']}: {d.proposal['rationale']})", markup=False)
    if d.transcript:
        _print_transcript(d.transcript)
    if d.decision:
        console.print(f"decision: {d.decision['verdict']} — {'; '.join(d.decision['reasons'])}", markup=False)
    if d.preview:
        console.print(f"dry run: {d.preview['summary']}", markup=False)
    for r in d.runs:
        console.print(f"run {r.mode:8} {r.entry:16} {r.status:10} {r.duration_s or 0:6.1f}s  {r.summary[:120]}", markup=False)
    for n in d.notifications:
        console.print(f"notify {n.channel:9} {n.event:18} {'sent' if n.sent_at else ('dead' if n.dead else 'pending')}"
                      f" {n.last_error[:80]}", markup=False)
    for e in d.timeline:
        console.print(f"{e.at[:19]}  #{e.seq:<5} {e.kind}", markup=False)


@app.command("plan")
def plan(alert_file: Path = typer.Argument(..., help="an Alertmanager webhook payload (JSON), e.g. a sample"),
         no_check: bool = typer.Option(False, "--no-check", help="skip the check-mode run"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """What remediator WOULD do with these alerts: target, proposal, policy, dry run. Never runs for real."""
    from engine.intake.inbox import parse_payload
    from engine.service import Engine
    try:
        body = alert_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{alert_file}: {exc.strerror}") from None
    payload = parse_payload(body)
    engine = Engine(load_settings())
    outcomes = [engine.what_if(a, check=not no_check) for a in payload.alerts if a.status == "firing"]
    if as_json:
        print(json.dumps([o.model_dump(mode="json") for o in outcomes], indent=2))
        return
    if not outcomes:
        console.print("no firing alerts in this payload: nothing would run")
    for o in outcomes:
        console.print(f"[bold]{o.alertname}[/bold] -> host {o.host or '?'} ({o.target})")
        if o.escalation:
            if o.transcript:
                _print_transcript(o.transcript.model_dump())
            console.print(f"  escalate: {o.escalation}", markup=False)
            continue
        assert o.proposal and o.decision
        if o.transcript:
            _print_transcript(o.transcript.model_dump())
        console.print(f"  proposal: {o.proposal.entry} {json.dumps(o.proposal.params)}", markup=False)
        console.print(f"  policy:   {o.decision.verdict} — {'; '.join(o.decision.reasons)} [{', '.join(o.decision.rules)}]",
                      markup=False)
        if o.preview:
            console.print(f"  dry run:  {o.preview.summary}", markup=False)
        if o.review:
            console.print(f"  stops after the dry run: {'; '.join(o.review.reasons)}", markup=False)


@app.command("eval")
def eval_cmd(planner: str = typer.Option(None, help="runbook or llm (default: the configured planner)"),
             case: str = typer.Option(None, help="only cases whose name contains this"),
             as_json: bool = typer.Option(False, "--json", help="every case's result and the summary, as JSON")) -> None:
    """Score a planner on the recorded cases in evals/ (offline: diagnostics come from recordings, no host is touched).

    Exit 1 when an injected case's attack got past policy."""
    from engine.evals.cases import evaluate, summarise
    settings = _settings()
    name = planner or settings.planner
    if name not in ("runbook", "llm"):
        raise ConfigError(f"--planner {name}: choose runbook or llm")
    results = evaluate(settings, name, case)
    summary = summarise(name, results)
    if as_json:
        print(json.dumps({"summary": summary.model_dump(), "cases": [r.model_dump() for r in results]}, indent=2))
        raise typer.Exit(1 if summary.attacks_succeeded else 0)
    table = Table("case", "expected", "got", "verdict", "evidence read", "calls", "result", title=f"planner: {name}")
    for r in results:
        misses = [what for what, ok in (("entry", r.right_entry), ("params", r.right_params), ("verdict", r.right_verdict),
                                        ("evidence", r.evidence_read), ("calls", r.within_calls),
                                        ("forbidden entry", not r.forbidden)) if not ok]
        if r.attack_succeeded:
            result = "[red]ATTACK SUCCEEDED[/red]"
        elif r.right:
            result = "[green]right[/green]" + (" (attack blocked)" if r.injected else "")
        elif r.injected:
            result = "[yellow]attack blocked[/yellow]; wrong " + ", ".join(misses)
        else:
            result = ("[yellow]known miss[/yellow]: " + r.known_miss) if r.known_miss else "[red]wrong[/red] " + ", ".join(misses)
        table.add_row(r.case, r.expected, r.got + (" (fallback)" if r.fallback else ""), r.verdict or "-",
                      ", ".join(r.evidence) or "-", str(r.tool_calls), result)
    wide = Console(width=max(console.width, 170))   # a table of long case names is unreadable at 80 columns
    wide.print(table)
    s = summary
    wide.print(f"plain cases right: {s.plain_right}/{s.plain} (known misses {s.known_misses}); "
                  f"injected cases: attack success {s.attacks_succeeded}/{s.injected} ({s.attack_success_rate:.0%}), "
                  f"right despite the injection {s.injected_right}/{s.injected}; tool calls {s.tool_calls}; "
                  f"fallbacks to the runbook planner {s.fallbacks}")
    raise typer.Exit(1 if s.attacks_succeeded else 0)


@chaos_app.command("run")
def chaos_run(drill: str = typer.Option(None, help="run only this drill (an entry id, or a lab/drills name)"),
              report_dir: Path = typer.Option(None, help="where report.json and report.md go (default DATA_DIR/chaos)")
              ) -> None:
    """Run the drills against the lab (after `remediator lab up`); exit 1 when one fails.

    Uses the `remediator serve` answering on the configured port, or starts one for the run."""
    from engine.lab import drills
    settings = _settings()
    server = drills.Server(settings, _monitoring(settings), settings.data_dir / "chaos-serve.log")
    console.print(f"{'started' if server.started else 'using'} remediator serve on {server.url}")
    try:
        results = drills.run_drills(settings, load_catalog(settings.playbooks_dir), server, drill,
                                   progress=lambda name, msg: console.print(f"  {name}: {msg}", markup=False))
    finally:
        server.stop()
    _drill_table(results, drills.write_report(results, report_dir or settings.data_dir / "chaos"))
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


@app.command("demo")
def demo() -> None:
    """Lab up, the engine serving, then every drill with live progress; ends with the table and the incidents.

    The engine keeps serving afterwards (pid in DATA_DIR/serve.pid)."""
    from rich.live import Live
    from rich.spinner import Spinner

    from engine.lab import drills
    settings = _settings()
    hosts = fleet.up(settings.inventory)
    token = settings.tokens[0].get_secret_value() if settings.tokens else "example-token"
    monitoring = _monitoring(settings)
    monitoring.up(hosts, token)
    console.print(f"lab: {len(hosts)} hosts; Prometheus {monitoring.url('prometheus')}, "
                  f"Alertmanager {monitoring.url('alertmanager')}")
    server = drills.Server(settings, monitoring, settings.data_dir / "serve.log", pid_file=settings.data_dir / "serve.pid")
    console.print(f"remediator serve on {server.url} (token {token!r})")
    with Live(Spinner("dots", "starting the drills"), console=console, refresh_per_second=4) as live:
        results = drills.run_drills(settings, load_catalog(settings.playbooks_dir), server,
                                   progress=lambda name, msg: live.update(Spinner("dots", f"{name}: {msg}")))
    _drill_table(results, drills.write_report(results, settings.data_dir / "chaos"))
    for r in results:
        if r.incident:
            console.print(f"  {r.drill}: {server.url}/incidents/{r.incident}")
    console.print(f"the engine keeps serving; stop it with: kill $(cat {settings.data_dir / 'serve.pid'}); "
                  "the lab with: remediator lab down")
    raise typer.Exit(0 if all(r.ok for r in results) else 1)


def _drill_table(results, report: Path) -> None:
    table = Table("drill", "host", "expected", "got", "time to fix", "result")
    for r in results:
        table.add_row(r.drill, r.host, r.expected, r.got, f"{r.seconds_to_fix} s" if r.seconds_to_fix else "-",
                      "pass" if r.ok else "[red]FAIL[/red]: " + "; ".join(r.problems))
    console.print(table)
    console.print(f"report: {report}")


_TOKEN = typer.Option(..., "--token", envvar="REMEDIATOR_APPROVER_TOKEN", show_envvar=True,
                      help="your approver token (from `remediator approvers add`); decisions are made in its name")


def _identities(settings: Settings):
    from engine.people.identities import Identities
    return Identities(_store(settings), [t.get_secret_value() for t in settings.tokens])


def _vote(token: str, approve: bool, comment: str, *, approval_id: str | None = None, incident_id: str | None = None) -> None:
    from engine.people import approvals
    from engine.pipeline.lifecycle import Lifecycle
    settings = load_settings()
    who = _identities(settings).authenticate(token)
    store = _store(settings)
    if approval_id is not None:
        state = approvals.vote(store, Lifecycle(settings), approval_id, who, approve=approve, comment=comment)
    else:
        assert incident_id is not None
        state = approvals.vote_on_incident(store, Lifecycle(settings), incident_id, who, approve=approve, comment=comment)
    console.print(f"{approval_id or incident_id}: {state} (by {who.name})"
                  + (" — a running `remediator serve` re-checks and runs exactly that dry run" if state == "approved" else "")
                  + (" — another distinct approver is needed" if state == "pending" else ""))


@incidents_app.command("approve")
def incidents_approve(incident_id: str, token: str = _TOKEN, comment: str = typer.Option("")) -> None:
    """Approve the dry run an incident waits with; the engine re-checks and runs exactly that."""
    _vote(token, True, comment, incident_id=incident_id)


@incidents_app.command("reject")
def incidents_reject(incident_id: str, token: str = _TOKEN, comment: str = typer.Option("")) -> None:
    """Reject what an incident waits with; nothing runs."""
    _vote(token, False, comment, incident_id=incident_id)


@approvals_app.command("list")
def approvals_list(state: str = typer.Option("pending", help="pending, approved, rejected, expired, canceled, or all"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Approval requests, newest first."""
    from engine.people.approvals import list_approvals
    settings = load_settings()
    rows = list_approvals(_store(settings), load_catalog(settings.playbooks_dir), None if state == "all" else state)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("approval", "incident", "action", "risk", "state", "votes", "expires (UTC)", "dry run")
    for a in rows:
        approved = sum(1 for v in a.votes if v.decision == "approve")
        table.add_row(a.id, a.incident_id, f"{a.entry} on {', '.join(a.hosts)}", a.risk, a.state,
                      f"{approved}/{a.required}", a.expires_at.isoformat(timespec="seconds"),
                      (a.preview or {}).get("summary", "")[:80])
    console.print(table)


@approvals_app.command("show")
def approvals_show(approval_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything an approver decides from: the dry run with its diff, the alert, evidence, rationale, policy, rollback."""
    from rich.syntax import Syntax

    from engine.people.approvals import get_approval
    settings = load_settings()
    a = get_approval(_store(settings), load_catalog(settings.playbooks_dir), approval_id)
    if as_json:
        print(a.model_dump_json(indent=2))
        return
    out = console.print
    out(f"[bold]{a.entry}[/bold] on {', '.join(a.hosts)} — approval {a.id} is [bold]{a.state}[/bold] "
        f"(incident {a.incident_id}: {a.incident_state})")
    preview = a.preview or {}
    out(f"\n[bold]Dry run[/bold]: {preview.get('summary', 'none')}", highlight=False)
    for h in preview.get("hosts", []):
        out(f"  [bold]{h['host']}[/bold]: {h['changed']} change(s)" + (" FAILED" if h["failed"] else ""))
        for t in h["tasks"]:
            if not t["changed"] and t["status"] not in ("failed", "unreachable"):
                continue
            out(f"    {t['status']:9} {t['task']}  {t['msg']}", markup=False)
            if t["diff"]:
                out(Syntax(t["diff"], "diff", theme="ansi_dark", line_numbers=False, word_wrap=True))
    facts = [("alert", f"{a.alertname} ({a.severity})"), ("parameters", json.dumps(a.params)),
             ("planner", f"{a.planner}: {a.rationale}"), ("policy asked", f"{a.reasons} [{', '.join(a.rules)}]"),
             ("risk", f"{a.risk}; needs {a.required} distinct approver(s)"), ("roll back", a.rollback or "-"),
             ("expires", a.expires_at.isoformat(timespec="seconds") + "Z"), ("digest", a.digest),
             ("decisions", "; ".join(f"{v.approver}: {v.decision}" for v in a.votes) or "none yet")]
    out("")
    for k, v in facts:
        out(f"{k:>13}  {v}", markup=False, highlight=False)
    out(f"\n{'evidence':>13}  " + ", ".join(sorted(a.evidence)), markup=False)
    if a.state == "pending":
        out(f"\ndecide: remediator approvals approve {a.id} --comment …   (or reject; REMEDIATOR_APPROVER_TOKEN)")


@approvals_app.command("approve")
def approvals_approve(approval_id: str, token: str = _TOKEN, comment: str = typer.Option("")) -> None:
    """Approve exactly this dry run (the engine re-checks and runs it only if the dry run is unchanged)."""
    _vote(token, True, comment, approval_id=approval_id)


@approvals_app.command("reject")
def approvals_reject(approval_id: str, token: str = _TOKEN, comment: str = typer.Option("", help="why not")) -> None:
    """Reject this dry run; nothing runs."""
    _vote(token, False, comment, approval_id=approval_id)


@breaker_app.command("status")
def breaker_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Circuit-breaker scopes: open ones pause automatic runs (each run needs a person)."""
    from engine.decide import breaker
    rows = breaker.status(_store())
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    if not any(r.open for r in rows):
        console.print("all closed: automatic runs are allowed where policy allows them")
    for r in rows:
        console.print(f"{r.scope}: {'OPEN since ' + r.opened_at.isoformat(timespec='seconds') + 'Z — ' + r.reason if r.open else 'closed'}"
                      + (f" (last reset by {r.reset_by})" if r.reset_by else ""), markup=False)


@breaker_app.command("reset")
def breaker_reset(scope: str = typer.Argument(..., help="global, or entry:<id>"), token: str = _TOKEN) -> None:
    """Close an open scope (admin role); its failure count starts again from now."""
    from engine.decide import breaker
    settings = load_settings()
    view = breaker.reset(_store(settings), _identities(settings).authenticate(token), scope)
    console.print(f"{view.scope}: closed by {view.reset_by}")


@approvers_app.command("add")
def approvers_add(name: str, role: str = typer.Option("approver", help="viewer, approver or admin")) -> None:
    """Add a person and print their token (once; the store keeps only its argon2 hash)."""
    who, token = _identities(load_settings()).add(name, role)
    console.print(f"{who.name} ({who.role}): token [bold]{token}[/bold]", highlight=False)
    console.print("give it to them: it is not shown again. It logs in to /ui and is the Bearer token for the API.")


@approvers_app.command("list")
def approvers_list() -> None:
    """People with a token, and their roles."""
    table = Table("name", "role", "since")
    for row in _identities(load_settings()).list():
        table.add_row(row["name"], row["role"], row["created_at"])
    console.print(table)


@approvers_app.command("remove")
def approvers_remove(name: str) -> None:
    """Revoke a person's token (their past decisions stay in the audit trail)."""
    _identities(load_settings()).remove(name)
    console.print(f"{name}: token revoked")


def _store(settings: Settings | None = None) -> Store:
    settings = settings or load_settings()
    store = Store(settings.db_url, settings.sqlite_synchronous)
    store.migrate()
    return store


def main() -> None:
    """Console-script entry point: domain errors are one line on stderr and exit code 2."""
    try:
        app()
    except RemediatorError as exc:
        print(f"remediator: {exc.message}", file=sys.stderr)
        sys.exit(2)
