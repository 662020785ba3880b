"""The one decision path: what remediator does with an alert, up to the verdict.

`decide()` plans (the planner may read diagnostics), reads the alert's service's declared dependencies
(dependencies.py), validates the parameters, applies policy with the
run history and the clock, then the circuit breaker and the interrupted-run rule. `gather()` adds the
chosen entry's own read-only diagnostics and the alert's series from Prometheus. serve (the pipeline),
`remediator plan` and `remediator eval` all call these two; they differ only in what they pass: the
executor (real, or recorded), the history (the store's, or an eval case's) and the clock.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select

from remediator.engine.catalog.loader import Catalog
from remediator.engine.decide import blast, breaker
from remediator.engine.decide.dependencies import dependency_down
from remediator.engine.decide.evidence import Evidence, refusal
from remediator.engine.decide.planners import Planner, PlanningContext, PlanningSession
from remediator.engine.decide.policy import Policy, PolicyContext
from remediator.engine.decide.reports import Query
from remediator.engine.decide.scope import template_of, unit_name
from remediator.engine.errors import ProposalError
from remediator.engine.model.alerts import Alert
from remediator.engine.model.records import ActionProposal, Escalation, PolicyDecision, Report, Transcript, Verdict
from remediator.engine.model.states import IncidentState, RunMode
from remediator.engine.outbound.prometheus import Prometheus, PrometheusError
from remediator.engine.store.db import Store
from remediator.engine.store.tables import Incident, Run

__all__ = ["Situation", "situation_of", "PastRun", "History", "StoreHistory", "RecordedHistory", "Decision", "decide", "judge",
           "breaker_rule", "metrics_query", "gather", "system_clock", "Clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Situation:
    """The alert as a decision sees it: an incident's (serve) or one alert's (plan, eval), on its mapped host."""

    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    host: str
    ref: str                                    # the incident id, or the alert's fingerprint, or the eval case
    generator_url: str = ""
    interrupted: str | None = None              # "apply": the last real run was cut off by a restart
    began: datetime | None = None               # when the alert began (aware, UTC): reports read the logs from here


def situation_of(alert: Alert, host: str) -> Situation:
    """One alert, not yet an incident (`remediator plan`, `remediator eval`)."""
    began = alert.startsAt if alert.startsAt.tzinfo else alert.startsAt.replace(tzinfo=UTC)
    return Situation(alertname=alert.alertname, labels=dict(alert.labels), annotations=dict(alert.annotations),
                     severity=alert.severity, host=host, ref=alert.fingerprint, generator_url=alert.generatorURL or "",
                     began=began)


@dataclass(frozen=True)
class PastRun:
    """A real run remediator made before (rate limits and storm brakes count them)."""

    entry: str
    hosts: list[str]
    params: dict[str, Any]
    started_at: datetime                        # aware, UTC
    verified: bool = False                      # its incident ended resolved: the fix held when it was checked
    incident: str = ""


class History(Protocol):
    def real_runs(self, entry: str, since: datetime) -> list[PastRun]: ...

    def open_breaker(self, entry: str, learned: list[str] | None = None) -> str | None:
        """Why automatic runs of `entry` (in these learned scopes) are paused (None: they are not)."""

    def last_verified(self, host: str, since: datetime) -> datetime | None:
        """When the last fix on `host` since then was verified (None: none was)."""


class StoreHistory:
    """The history the store holds: serve and `remediator plan` read this."""

    def __init__(self, store: Store):
        self.store = store

    def real_runs(self, entry: str, since: datetime) -> list[PastRun]:
        naive = since.astimezone(UTC).replace(tzinfo=None)   # the store keeps UTC without a zone
        with self.store.read() as session:
            rows = session.execute(select(Run, Incident.state).join(Incident, Incident.id == Run.incident_id)
                                   .where(Run.mode == RunMode.APPLY, Run.entry == entry, Run.started_at >= naive)).all()
            return [PastRun(r.entry, list(r.hosts), dict(r.params), r.started_at.replace(tzinfo=UTC),
                            verified=state == IncidentState.RESOLVED, incident=r.incident_id) for r, state in rows]

    def last_verified(self, host: str, since: datetime) -> datetime | None:
        naive = since.astimezone(UTC).replace(tzinfo=None)
        with self.store.read() as session:
            at = session.execute(select(func.max(Incident.closed_at)).join(Run, Run.incident_id == Incident.id)
                                 .where(Run.mode == RunMode.APPLY, Incident.host == host,
                                        Incident.state == IncidentState.RESOLVED, Incident.closed_at >= naive)).scalar()
        return at.replace(tzinfo=UTC) if at is not None else None

    def open_breaker(self, entry: str, learned: list[str] | None = None) -> str | None:
        with self.store.read() as session:
            row = breaker.tripped(session, entry, learned or [])
            if row is None:
                return None
            opened = f"{row.opened_at:%Y-%m-%d %H:%M}Z" if row.opened_at else "?"
            return (f"circuit breaker {row.scope} is open since {opened} ({row.reason}); an admin resets it with "
                    f"`remediator breaker reset`")


@dataclass
class RecordedHistory:
    """A history written down (an eval case's history.yml); nothing is read from a store."""

    runs: list[PastRun] = field(default_factory=list)
    breakers: dict[str, str] = field(default_factory=dict)      # entry -> why it is paused

    def real_runs(self, entry: str, since: datetime) -> list[PastRun]:
        return [r for r in self.runs if r.entry == entry and r.started_at >= since]

    def last_verified(self, host: str, since: datetime) -> datetime | None:
        return max((r.started_at for r in self.runs if r.verified and host in r.hosts and r.started_at >= since),
                   default=None)

    def open_breaker(self, entry: str, learned: list[str] | None = None) -> str | None:
        return next((self.breakers[s] for s in (learned or []) if s in self.breakers), self.breakers.get(entry))


@dataclass
class Decision:
    """What decide() arrived at. `proposal` carries the validated parameters; `escalation` is set instead
    when the planner found no catalog entry (or there is no host)."""

    situation: Situation
    evidence: Evidence | None
    transcript: Transcript | None = None
    proposal: ActionProposal | None = None
    params: dict[str, Any] | None = None        # None: the proposal's parameters did not validate
    verdict: PolicyDecision | None = None
    escalation: Escalation | None = None
    report: Report | None = None                # a Level 2 runbook's diagnosis (with a proposal or an escalation)


def decide(situation: Situation, *, catalog: Catalog, planner: Planner, policy: Policy, history: History,
           clock: Clock = system_clock, evidence: Evidence | None = None, query: Query | None = None) -> Decision:
    """Plan, validate, policy (with history and clock), breaker, interrupted-run rule. Nothing runs for real.

    `evidence` is how the planner reads diagnostics on the host; None: it plans from the alert alone. `query` is how
    a Level 2 report asks Prometheus (`metrics_query`, or an eval case's recordings)."""
    session = PlanningSession(diagnose=evidence.diagnose if evidence is not None else None,
                              query=evidence.asking(query) if evidence is not None else query,
                              refused=refusal(catalog, situation.host, policy.inventory) if evidence is None else None)
    ctx = PlanningContext(alertname=situation.alertname, labels=situation.labels, annotations=situation.annotations,
                          host=situation.host, severity=situation.severity, ref=situation.ref,
                          since=window_start(situation, history))
    plan = planner.plan(ctx, session)
    out = Decision(situation=situation, evidence=evidence, transcript=session.transcript, report=session.report)
    # Before acting on (or reporting on) the alert's service: is what it needs down? A binding escalation stands.
    if session.diagnose is not None and (not isinstance(plan, Escalation) or session.report is not None):
        plan = dependency_down(policy.inventory, situation.host, situation.labels, session.diagnose) or plan
    if isinstance(plan, Escalation):
        out.escalation = plan
        return out
    verdict, params = judge(situation, plan, catalog=catalog, policy=policy, history=history, clock=clock)
    out.proposal = plan.model_copy(update={"params": params or plan.params})
    out.params, out.verdict = params, verdict
    return out


#: how far before the alert's start a report reads the host's logs: a fault logs before its alert fires (`for:`)
LOOKBACK = timedelta(minutes=10)


def window_start(situation: Situation, history: History) -> datetime | None:
    """Where a report starts reading the host's logs: a little before the alert began, but never before the last
    verified fix on the host, whose fault's lines would otherwise outrank this one's."""
    if situation.began is None:
        return None
    start = situation.began - LOOKBACK
    fixed = history.last_verified(situation.host, start)
    return max(start, fixed) if fixed is not None else start


def judge(situation: Situation, plan: ActionProposal, *, catalog: Catalog, policy: Policy, history: History,
          clock: Clock = system_clock) -> tuple[PolicyDecision, dict[str, Any] | None]:
    """The verdict on a proposal now: policy (with history and clock), breaker, interrupted-run rule; and the
    validated parameters (None when they do not validate). decide() calls it, and the pipeline again right
    before a real run: what was allowed or approved a while ago may not be now."""
    try:
        params = catalog.get(plan.entry).validate_params(plan.params)
    except ProposalError:
        params = None   # policy denies it, with the reason
    context, earlier = _policy_context(situation, plan, params, history, clock(), catalog)
    verdict, params = policy.decide(plan, context)
    groups = policy.inventory.hosts.get(situation.host, [])
    scopes = breaker.learned_scopes(plan.entry, groups, situation.alertname) + blast.brake_scopes(groups, situation.alertname)
    verdict = breaker_rule(verdict, plan.entry, history, scopes)
    if (why := blast.target_problem(policy.inventory, plan.hosts)) and verdict.verdict != Verdict.DENY:
        verdict = PolicyDecision(verdict=Verdict.DENY, rules=[*verdict.rules, "one-region"], reasons=[why])
    if plan.needs_person and verdict.verdict == Verdict.ALLOW:   # Level 2: never automatic, whatever rules allow
        verdict = PolicyDecision(verdict=Verdict.APPROVE, rules=[*verdict.rules, "needs-person"],
                                 reasons=[plan.needs_person])
    if earlier and verdict.verdict == Verdict.APPROVE:   # the person deciding sees what was done here before
        verdict = verdict.model_copy(update={"reasons": [*verdict.reasons, _history_line(earlier, situation.host)]})
    if situation.interrupted == RunMode.APPLY and verdict.verdict == Verdict.ALLOW:
        verdict = PolicyDecision(verdict=Verdict.APPROVE, rules=[*verdict.rules, "interrupted-run"], reasons=[
            "the last real run was cut off by a restart and may have changed the host; a person decides "
            "from this new dry run whether it runs again"])
    return verdict, params


def breaker_rule(verdict: PolicyDecision, entry: str, history: History, learned: list[str] | None = None
                 ) -> PolicyDecision:
    """While a circuit breaker (or a learned scope the action falls in) is open, what policy would allow needs a
    person instead (it never loosens)."""
    if verdict.verdict != Verdict.ALLOW:
        return verdict
    paused = history.open_breaker(entry, learned)
    if paused is None:
        return verdict
    return PolicyDecision(verdict=Verdict.APPROVE, rules=[*verdict.rules, "circuit-breaker"], reasons=[paused])


def _acts_on(catalog: Catalog, entry: str, params: dict[str, Any] | None) -> Any:
    """What a run acts on, for counting repeats: its scoped units or services as systemd names them (`webapp` and
    `webapp.service` are one unit, whatever the free-text `reason`; every instance of a template counts as the
    template: `worker@1` and `worker@9999` are one, so a fresh instance name is no fresh budget); all its parameters
    for an unscoped entry."""
    scopes = catalog.get(entry).meta.scope if entry in catalog.entries else []
    if not scopes or params is None:
        return params
    return tuple(template_of(str(params.get(s.param, ""))) if s.kind == "unit" else unit_name(str(params.get(s.param, "")))
                 for s in scopes)


def _policy_context(situation: Situation, plan: ActionProposal, params: dict[str, Any] | None, history: History,
                    now: datetime, catalog: Catalog) -> tuple[PolicyContext, list[PastRun]]:
    """What rules may look at: the alert, this hour's real runs of the entry (rate limits, flapping), the time; and
    the runs of this same action on this host within the hour."""
    runs = history.real_runs(plan.entry, now - timedelta(hours=1))
    target = _acts_on(catalog, plan.entry, params)
    same = [r for r in runs if situation.host in r.hosts and _acts_on(catalog, r.entry, r.params) == target]
    return PolicyContext(incident_host=situation.host, severity=situation.severity, labels=situation.labels,
                         same_action_last_hour=len(same), same_fix_verified_last_hour=sum(r.verified for r in same),
                         entry_runs_last_hour=len(runs), hour_utc=now.astimezone(UTC).hour,
                         weekday=now.astimezone(UTC).weekday()), same


def _history_line(earlier: list[PastRun], host: str) -> str:
    """The same action's earlier real runs on the host, for the person who decides: when, and whether it held."""
    shown = ", ".join(f"{r.started_at:%H:%M}Z" + (f" (incident {r.incident}" if r.incident else " (")
                      + ("; verified)" if r.verified else "; not verified)")
                      for r in sorted(earlier, key=lambda r: r.started_at)[-5:])
    return f"done on {host} within the hour before: {len(earlier)} time(s), {shown}"


def metrics_query(prometheus: Prometheus | None) -> Query | None:
    """How a Level 2 report asks this Prometheus: (name, PromQL) -> series as {labels, value}."""
    if prometheus is None:
        return None
    return lambda _name, expr: [{"labels": s.labels, "value": float(s.value)} for s in prometheus.query(expr)[:20]]


def gather(decision: Decision, catalog: Catalog, prometheus: Prometheus | None = None) -> dict[str, Any]:
    """The evidence for the person who reads the incident: the alert's series, what the planner read, and the
    chosen entry's own read-only diagnostics. Safe to run beside the check run (both are read-only)."""
    found: dict[str, Any] = {}
    situation = decision.situation
    expr = prometheus.expression_for(situation.generator_url, situation.alertname, situation.labels) if prometheus else None
    if prometheus is not None and expr:
        try:
            series = prometheus.matching(expr, decision.situation.labels)
            found["prometheus"] = {"expr": expr, "series": [{"labels": s.labels, "value": s.value} for s in series[:20]]}
        except PrometheusError as exc:
            found["prometheus"] = {"expr": expr, "error": str(exc)}
    if decision.proposal is not None and decision.params is None:
        found["_planner"] = {"error": "the proposal's parameters do not validate"}
    elif decision.proposal is not None and decision.evidence is not None:
        decision.evidence.for_remediation(catalog.get(decision.proposal.entry), decision.params or {})
    return found | (decision.evidence.as_dict() if decision.evidence is not None else {})
