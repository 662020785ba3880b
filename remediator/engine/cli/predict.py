"""What remediator WOULD do: `plan` for an alert file, `eval` over the recorded cases."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from remediator.engine.cli import common
from remediator.engine.cli.common import console
from remediator.engine.cli.incidents import print_transcript
from remediator.engine.errors import ConfigError


def plan(alert_file: Path = typer.Argument(..., help="an Alertmanager webhook payload (JSON), e.g. a sample"),
         no_check: bool = typer.Option(False, "--no-check", help="skip the check-mode run"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """What remediator WOULD do with these alerts: target, proposal, policy, dry run. Never runs for real."""
    from remediator.engine.intake.inbox import parse_payload
    from remediator.engine.service import Engine
    try:
        body = alert_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{alert_file}: {exc.strerror}") from None
    payload = parse_payload(body)
    engine = Engine.load(common.settings())
    outcomes = [engine.what_if(a, check=not no_check) for a in payload.alerts if a.status == "firing"]
    if as_json:
        print(json.dumps([o.model_dump(mode="json") for o in outcomes], indent=2))
        return
    if not outcomes:
        console.print("no firing alerts in this payload: nothing would run")
    for o in outcomes:
        console.print(f"[bold]{o.alertname}[/bold] -> host {o.host or '?'} ({o.target})")
        for line in o.report.lines() if o.report else []:
            console.print(f"  {line}", markup=False)
        if o.escalation:
            if o.transcript:
                print_transcript(o.transcript.model_dump())
            console.print(f"  escalate: {o.escalation}", markup=False)
            continue
        assert o.proposal and o.decision
        if o.transcript:
            print_transcript(o.transcript.model_dump())
        console.print(f"  proposal: {o.proposal.entry} {json.dumps(o.proposal.params)}", markup=False)
        console.print(f"  policy:   {o.decision.verdict} — {'; '.join(o.decision.reasons)} [{', '.join(o.decision.rules)}]",
                      markup=False)
        if o.preview:
            console.print(f"  dry run:  {o.preview.summary}", markup=False)
        if o.review:
            console.print(f"  stops after the dry run: {'; '.join(o.review.reasons)}", markup=False)


def eval_cmd(planner: str = typer.Option(None, help="runbook or llm (default: the configured planner)"),
             case: str = typer.Option(None, help="only cases whose name contains this"),
             limit: int = typer.Option(None, min=1, help="at most this many cases (a slow model: try a few first)"),
             as_json: bool = typer.Option(False, "--json", help="every case's result and the summary, as JSON")) -> None:
    """Score a planner on the recorded cases in evals/ (offline: diagnostics come from recordings, no host is touched).

    Exit 1 when an injected case's attack got past policy, or a case would run without a person what it does not call
    right (made worse)."""
    from remediator.engine.evals.cases import evaluate, summarise
    settings = common.settings()
    name = planner or settings.planner
    if name not in ("runbook", "llm"):
        raise ConfigError(f"--planner {name}: choose runbook or llm")
    from rich.progress import Progress
    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task(f"eval ({name})", total=None)
        results = evaluate(settings, name, case, limit,
                           progress=lambda r, total: bar.update(task, total=total, advance=1, description=r.case[:40]))
    summary = summarise(name, results)
    if as_json:
        print(json.dumps({"summary": summary.model_dump(), "cases": [r.model_dump() for r in results]}, indent=2))
        raise typer.Exit(1 if summary.attacks_succeeded or summary.made_worse else 0)
    table = Table("case", "expected", "got", "verdict", "evidence read", "calls", "s", "result", title=f"planner: {name}")
    for r in results:
        misses = [what for what, ok in (("entry", r.right_entry), ("params", r.right_params), ("verdict", r.right_verdict),
                                        ("evidence", r.evidence_read), ("cause", r.right_cause), ("calls", r.within_calls),
                                        ("forbidden entry", not r.forbidden)) if not ok]
        if r.attack_succeeded:
            result = "[red]ATTACK SUCCEEDED[/red]"
        elif r.worse:
            result = "[red]MADE WORSE[/red]: would run " + r.got + " without a person"
        elif r.right:
            result = "[green]right[/green]" + (" (attack blocked)" if r.injected else "")
        elif r.injected:
            result = "[yellow]attack blocked[/yellow]; wrong " + ", ".join(misses)
        else:
            result = ("[yellow]known miss[/yellow]: " + r.known_miss) if r.known_miss else "[red]wrong[/red] " + ", ".join(misses)
        table.add_row(r.case, r.expected, r.got + (" (fallback)" if r.fallback else ""), r.verdict or "-",
                      ", ".join(r.evidence) or "-", str(r.tool_calls), f"{r.seconds:.1f}", result)
    wide = Console(width=max(console.width, 170))   # a table of long case names is unreadable at 80 columns
    wide.print(table)
    s = summary
    wide.print(f"plain cases right: {s.plain_right}/{s.plain} (known misses {s.known_misses}); "
                  f"injected cases: attack success {s.attacks_succeeded}/{s.injected} ({s.attack_success_rate:.0%}), "
                  f"right despite the injection {s.injected_right}/{s.injected}; made worse {s.made_worse}; "
                  f"tool calls {s.tool_calls} "
                  f"({s.invalid_calls} invalid); fallbacks to the runbook planner {s.fallbacks}; "
                  f"median {s.median_case_s:g} s a case; {s.tokens} tokens")
    raise typer.Exit(1 if s.attacks_succeeded or s.made_worse else 0)


llm_app = typer.Typer(help="The LLM planner's endpoint.", no_args_is_help=True)


@llm_app.command("check")
def llm_check() -> None:
    """Whether the configured endpoint and model do native tool calls, structured output, or neither (two tiny
    requests), and the llm_tool_mode that follows; exit 1 when neither works."""
    import openai

    from remediator.engine.decide.llm_tools import probe
    from remediator.engine.logs import redact
    s = common.settings()
    # Under the runbook planner (the default) no model is asked: an endpoint that fails here changes nothing in serve.
    unused = (f" (planner is {s.planner}: serve asks no model, so nothing needs one; this checks the endpoint for "
              "planner: llm)") if s.planner != "llm" else ""
    client = openai.OpenAI(base_url=s.llm_base_url, api_key=s.llm_api_key.get_secret_value(), timeout=s.llm_timeout_s,
                           max_retries=s.llm_max_retries)
    try:
        found = probe(client, s.llm_model, s.llm_timeout_s)
    except openai.OpenAIError as exc:
        raise ConfigError(redact(f"cannot ask {s.llm_base_url} (model {s.llm_model}): {exc}; check llm_base_url, "
                                 "llm_model and llm_api_key") + unused) from None
    console.print(f"endpoint {redact(s.llm_base_url)}, model {s.llm_model}{unused}", markup=False)
    console.print(f"  native tool calls:  {'yes' if found.native_tools else 'no'}", markup=False)
    console.print(f"  structured output:  {'yes' if found.structured_output else ('not needed' if found.native_tools else 'no')}",
                  markup=False)
    console.print(f"  seen: {found.seen}", markup=False)
    if found.mode == "none":
        console.print("neither works: this model cannot plan here (the runbooks will answer every alert)", markup=False)
        raise typer.Exit(1)
    console.print(f"use llm_tool_mode: {found.mode} (or auto, which finds the same)", markup=False)
