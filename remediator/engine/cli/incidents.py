"""Incidents and approvals: what came in, what was done, and the dry runs people decide on."""
from __future__ import annotations

import json

import typer
from rich.table import Table

from remediator.engine.catalog.loader import load_catalog
from remediator.engine.cli import common, remote
from remediator.engine.cli.common import console
from remediator.engine.model.states import ApprovalState

incidents_app = typer.Typer(help="Incidents in the store: what came in and what was done.", no_args_is_help=True)
approvals_app = typer.Typer(help="Approval requests: the dry run a person decides on.", no_args_is_help=True)


@incidents_app.command("list")
def incidents_list(state: str = typer.Option(None, help="only incidents in this state"),
                   limit: int = typer.Option(50, min=1, max=1000),
                   search: str = typer.Option(None, "--search", help="only those with this text in the id, alert, "
                                              "host, entry or reason (any case)"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """The newest incidents, with state and what was done."""
    from remediator.engine.store.queries import IncidentSummary, list_incidents
    if (api := remote.remote()) is not None:
        rows = [IncidentSummary.model_validate(r) for r in api.call("GET", "/incidents", params={
            k: v for k, v in {"state": state, "limit": limit, "q": search}.items() if v})]
    else:
        rows = list_incidents(common.store(), state, limit, search)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("id", "state", "alert", "host", "entry", "reason")
    for r in rows:
        table.add_row(r.id, r.state, r.alertname, r.host or "-", r.entry or "-", r.reason[:100])
    console.print(table)


def print_transcript(t: dict) -> None:
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
    from remediator.engine.store.queries import IncidentDetail, get_incident
    api = remote.remote()
    d = (IncidentDetail.model_validate(api.call("GET", f"/incidents/{incident_id}")) if api is not None
         else get_incident(common.store(), incident_id))
    if as_json:
        print(d.model_dump_json(indent=2))
        return
    console.print(f"[bold]{d.id}[/bold]  {d.alertname} on {d.host or '?'}  severity {d.severity}  "
                  f"state [bold]{d.state}[/bold]  firing={d.firing}")
    console.print(f"reason: {d.reason}", markup=False)
    if d.state in ("received", "approved") and api is None:   # read from the store's claims, on the server
        _held_back(d.host)
    for line in d.report.lines() if d.report else []:
        console.print(line, markup=False)
    if d.proposal:
        console.print(f"proposal: {d.proposal.entry} {json.dumps(d.proposal.params)} on {d.proposal.hosts} "
                      f"({d.proposal.planner}: {d.proposal.rationale})", markup=False)
    if d.transcript:
        print_transcript(d.transcript)
    if d.decision:
        console.print(f"decision: {d.decision.verdict} — {'; '.join(d.decision.reasons)}", markup=False)
    if d.preview:
        console.print(f"dry run: {d.preview.summary}", markup=False)
    for r in d.runs:
        console.print(f"run {r.mode:8} {r.entry:16} {r.status:10} {r.duration_s or 0:6.1f}s  {r.summary[:120]}", markup=False)
    for n in d.notifications:
        console.print(f"notify {n.channel:9} {n.event:18} {'sent' if n.sent_at else ('dead' if n.dead else 'pending')}"
                      f" {n.last_error[:80]}", markup=False)
    for e in d.timeline:
        console.print(f"{e.at[:19]}  #{e.seq:<5} {e.kind}", markup=False)


def _held_back(host: str | None) -> None:
    """Say so when a pause, the budget or a cap keeps this incident from being claimed."""
    from remediator.engine.catalog.inventory import load_inventory
    from remediator.engine.decide import blast
    from remediator.engine.store import leases
    settings = common.settings()
    inventory = load_inventory(settings.inventory)
    with common.store(settings).read() as session:
        pause = leases.holding(session, host, inventory.hosts.get(host or "", []))
        why = blast.waiting(session, settings.section(blast.Limits), inventory, host)
    if pause is not None:
        console.print(f"held back: claims are paused ({pause.scope}) by {pause.by} since {pause.at:%Y-%m-%d %H:%M:%S}"
                      f"{': ' + pause.reason if pause.reason else ''}; `remediator resume` lets it go on", markup=False)
    if why:
        console.print(f"waiting: {why}; it is claimed when there is room", markup=False)


DIGEST = typer.Option(..., "--digest", metavar="DIGEST", help="the digest `remediator approvals show ID` prints with the "
                      "dry run you read: you approve that dry run, and one that changed since is refused")


def _vote(token: str, approve: bool, comment: str, *, approval_id: str | None = None, incident_id: str | None = None,
          digest: str | None = None) -> None:
    if (api := remote.remote(token)) is not None:
        path = f"/approvals/{approval_id}" if approval_id is not None else f"/incidents/{incident_id}"
        answer = api.call("POST", f"{path}/{'approve' if approve else 'reject'}",
                          json={"comment": comment, **({"digest": digest} if digest else {})})
        state = answer.get("state") or answer.get("approval", "")
        console.print(f"{approval_id or incident_id}: {state} (by {answer['by']}, on {api.url})")
        return
    from remediator.engine.decide.closing import lifecycle
    from remediator.engine.people import approvals
    settings = common.settings()
    who = common.identities(settings).authenticate(token)
    db = common.store(settings)
    if approval_id is not None:
        state = approvals.vote(db, lifecycle(settings), approval_id, who, approve=approve, comment=comment, digest=digest)
    else:
        assert incident_id is not None
        state = approvals.vote_on_incident(db, lifecycle(settings), incident_id, who, approve=approve, comment=comment,
                                           digest=digest)
    console.print(f"{approval_id or incident_id}: {state} (by {who.name})"
                  + (" — a running `remediator serve` re-checks and runs exactly that dry run" if state == ApprovalState.APPROVED else "")
                  + (" — another distinct approver is needed" if state == ApprovalState.PENDING else ""))


@incidents_app.command("approve")
def incidents_approve(incident_id: str, token: str = common.TOKEN, digest: str = DIGEST,
                      comment: str = typer.Option("")) -> None:
    """Approve the dry run an incident waits with (the one you read: --digest); the engine re-checks and runs exactly
    that."""
    _vote(token, True, comment, incident_id=incident_id, digest=digest.strip())


@incidents_app.command("reject")
def incidents_reject(incident_id: str, token: str = common.TOKEN, comment: str = typer.Option("")) -> None:
    """Reject what an incident waits with; nothing runs."""
    _vote(token, False, comment, incident_id=incident_id)


@approvals_app.command("list")
def approvals_list(state: str = typer.Option("pending", help="pending, approved, rejected, expired, canceled, or all"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Approval requests, newest first."""
    from remediator.engine.people.approvals import ApprovalDetail, list_approvals
    if (api := remote.remote()) is not None:
        rows = [ApprovalDetail.model_validate(a) for a in api.call("GET", "/approvals", params={"state": state})]
    else:
        settings = common.settings()
        rows = list_approvals(common.store(settings), load_catalog(*settings.catalog_roots),
                              None if state == "all" else state)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table("approval", "incident", "action", "risk", "state", "votes", "expires (UTC)", "dry run")
    for a in rows:
        approved = sum(1 for v in a.votes if v.decision == "approve")
        table.add_row(a.id, a.incident_id, f"{a.entry} on {', '.join(a.hosts)}", a.risk, a.state,
                      f"{approved}/{a.required}", a.expires_at.isoformat(timespec="seconds"),
                      (a.preview.summary if a.preview else "")[:80])
    console.print(table)


@approvals_app.command("show")
def approvals_show(approval_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything an approver decides from: the dry run with its diff, the alert, evidence, rationale, policy, rollback."""
    from rich.syntax import Syntax

    from remediator.engine.people.approvals import ApprovalDetail, get_approval
    if (api := remote.remote()) is not None:
        a = ApprovalDetail.model_validate(api.call("GET", f"/approvals/{approval_id}"))
    else:
        settings = common.settings()
        a = get_approval(common.store(settings), load_catalog(*settings.catalog_roots), approval_id)
    if as_json:
        print(a.model_dump_json(indent=2))
        return
    out = console.print
    out(f"[bold]{a.entry}[/bold] on {', '.join(a.hosts)} — approval {a.id} is [bold]{a.state}[/bold] "
        f"(incident {a.incident_id}: {a.incident_state})")
    out(f"\n[bold]Dry run[/bold]: {a.preview.summary if a.preview else 'none'}", highlight=False)
    for h in a.preview.hosts if a.preview else []:
        out(f"  [bold]{h.host}[/bold]: {h.changed} change(s)" + (" FAILED" if h.failed else ""))
        for t in h.tasks:
            if not t.changed and t.status not in ("failed", "unreachable"):
                continue
            out(f"    {t.status:9} {t.task}  {t.msg}", markup=False)
            if t.diff:
                out(Syntax(t.diff, "diff", theme="ansi_dark", line_numbers=False, word_wrap=True))
    facts = [("alert", f"{a.alertname} ({a.severity})"), ("parameters", json.dumps(a.params)),
             ("planner", f"{a.planner}: {a.rationale}"), ("policy asked", f"{a.reasons} [{', '.join(a.rules)}]"),
             ("risk", f"{a.risk}; needs {a.required} distinct approver(s)"), ("roll back", a.rollback or "-"),
             ("expires", a.expires_at.isoformat(timespec="seconds") + "Z"), ("digest", a.digest),
             ("decisions", "; ".join(f"{v.approver}: {v.decision}" for v in a.votes) or "none yet")]
    out("")
    for k, v in facts:
        out(f"{k:>13}  {v}", markup=False, highlight=False)
    out(f"\n{'evidence':>13}  " + ", ".join(sorted(a.evidence)), markup=False)
    for line in a.report.lines() if a.report else []:
        out(line, markup=False)
    if a.state == ApprovalState.PENDING:
        out(f"\ndecide: remediator approvals approve {a.id} --digest {a.digest} --comment …   (or reject; "
            "REMEDIATOR_APPROVER_TOKEN)", markup=False, highlight=False, soft_wrap=True)


@approvals_app.command("approve")
def approvals_approve(approval_id: str, token: str = common.TOKEN, digest: str = DIGEST,
                      comment: str = typer.Option("")) -> None:
    """Approve exactly the dry run you read (--digest; the engine re-checks and runs it only if it is unchanged)."""
    _vote(token, True, comment, approval_id=approval_id, digest=digest.strip())


@approvals_app.command("reject")
def approvals_reject(approval_id: str, token: str = common.TOKEN, comment: str = typer.Option("", help="why not")) -> None:
    """Reject this dry run; nothing runs."""
    _vote(token, False, comment, approval_id=approval_id)
