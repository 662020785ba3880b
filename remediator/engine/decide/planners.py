"""Planners choose ONE catalog entry and fill its parameters. Their output is data, never a command.

RunbookPlanner (the default) is deterministic: runbooks/*.yml map alert matchers to an entry, and
parameter values come from labels by plain substitution (`${labels.service}`, `${host}`, and `${since}`: where
logs are read from, in seconds since the epoch); alert text is never templated. No runbook matches: escalate.
"""
from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import celpy
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from remediator.engine.catalog.loader import Catalog, EntryKind
from remediator.engine.decide.cel import compile_condition
from remediator.engine.decide.gates import EntryCall, Finding, read_gate, summary, unreachable_gate
from remediator.engine.decide.reports import Query, ReportSpec, write_report
from remediator.engine.errors import ConfigError, ProposalError
from remediator.engine.model.records import ActionProposal, Escalation, Report, Transcript

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["PlanningContext", "PlanningSession", "Planner", "RunbookPlanner", "Runbook", "load_runbooks"]


class PlanningContext(BaseModel):
    """What a planner may look at: the incident's alert and its (already mapped) host."""

    model_config = ConfigDict(frozen=True)
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    host: str
    severity: str = "none"
    ref: str = ""                           # the incident id (or eval case) the planning is for
    since: datetime | None = None           # where reports start reading logs (decision.window_start)


@dataclass
class PlanningSession:
    """What a planner may use while planning one incident, and what it leaves behind for the record."""

    #: run a read-only diagnostic on the incident's host: (entry id, parameters) -> outcome
    diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome] | None = None
    #: ask Prometheus: (metric name, PromQL) -> series (a Level 2 report's metrics)
    query: Query | None = None
    #: without `diagnose`: why a read would be refused by the host's allow-lists, known without reading
    refused: Callable[[str, dict[str, Any]], str | None] | None = None
    #: set by planners that talk to a model: the whole conversation
    transcript: Transcript | None = None
    #: set when a runbook wrote a Level 2 report (remediator/engine/decide/reports.py)
    report: Report | None = None


class Planner(Protocol):
    name: str

    def plan(self, ctx: PlanningContext, session: PlanningSession | None = None) -> ActionProposal | Escalation: ...

    def gate_again(self, ctx: PlanningContext, proposal: ActionProposal,
                   diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome]) -> str | None:
        """Right before the real run: why not to run it now (the runbook's evidence no longer shows the fault)."""

    def work_order(self, alertname: str, labels: dict[str, str]) -> int:
        """Where this alert comes among the alerts waiting on one host: the lower first (its runbook's `order`)."""


DEFAULT_ORDER = 50


class _Template(string.Template):
    # ${labels.service}, ${annotations.summary}, ${host}: names only, no expressions.
    idpattern = r"(?:labels|annotations)\.[a-zA-Z_][a-zA-Z0-9_]*|host|alertname|since"


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    match: dict[str, str]                  # label -> exact value, or "~regex" (full match, any case)
    action: EntryCall | None = None
    escalate: str | None = None            # a reason: this alert always needs a person
    report: ReportSpec | None = None       # Level 2: diagnose and propose; a person decides (remediator/engine/decide/reports.py)
    rationale: str = ""
    # Diagnose first (remediator/engine/decide/gates.py): read these, act only when `act_when` holds, else escalate.
    evidence: dict[str, EntryCall] = {}
    act_when: str | None = None            # CEL over the evidence, by name
    otherwise: str = "the evidence does not show the fault this runbook fixes"
    findings: list[Finding] = []           # what else the evidence may show: a line, or a reason to hold (gates.py)
    # Alerts waiting on one host are worked in this order, the lower first: a cause (a full disk) before what it
    # causes (a service down), a fix before a report that would otherwise read the fixed fault.
    order: int = Field(DEFAULT_ORDER, ge=0, le=100)
    _gate: Any = PrivateAttr(None)          # act_when, compiled at load

    def matches(self, labels: dict[str, str]) -> bool:
        for label, want in self.match.items():
            have = labels.get(label)
            if have is None:
                return False
            if want.startswith("~"):   # any case: `SSHBruteForce` must not slip past a rule that says "bruteforce"
                if not re.fullmatch(want[1:], have, re.IGNORECASE):
                    return False
            elif have != want:
                return False
        return True


def load_runbooks(directory: Path, catalog: Catalog) -> list[Runbook]:
    """All runbooks, in file then list order; fail closed naming the file and the runbook."""
    books: list[Runbook] = []
    for path in sorted(directory.glob("*.yml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        for i, raw in enumerate(doc.get("runbooks") or []):
            try:
                book = Runbook.model_validate(raw)
            except ValidationError as exc:
                e = exc.errors()[0]
                raise ConfigError(f"{path}: runbooks[{i}].{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
            if sum(x is not None for x in (book.action, book.escalate, book.report)) != 1:
                raise ConfigError(f"{path}: runbook {book.name}: give exactly one of action, escalate or report")
            if book.report is not None:
                book.report.check(f"{path}: runbook {book.name}", catalog)
            if book.action:
                try:
                    entry = catalog.get(book.action.entry)
                except ProposalError as exc:
                    raise ConfigError(f"{path}: runbook {book.name}: {exc.message}") from None
                if entry.meta.kind != EntryKind.REMEDIATION:
                    raise ConfigError(f"{path}: runbook {book.name}: {entry.id} is not a remediation")
            _check_gate(path, book, catalog)
            books.append(book)
    return books


def _check_gate(path: Path, book: Runbook, catalog: Catalog) -> None:
    """A gate reads diagnostics only and has a condition that compiles; fail at start-up, naming the runbook."""
    if bool(book.evidence) != bool(book.act_when):
        raise ConfigError(f"{path}: runbook {book.name}: `evidence` and `act_when` go together")
    if book.findings and not book.evidence:
        raise ConfigError(f"{path}: runbook {book.name}: `findings` read the runbook's `evidence`; it has none")
    for finding in book.findings:
        finding.compile(f"{path}: runbook {book.name}: finding {finding.says[:40]!r}")
    for name, call in book.evidence.items():
        if not name.isidentifier():
            raise ConfigError(f"{path}: runbook {book.name}: evidence name {name!r} must be an identifier (CEL uses it)")
        try:
            kind = catalog.get(call.entry).meta.kind
        except ProposalError as exc:
            raise ConfigError(f"{path}: runbook {book.name}: {exc.message}") from None
        if kind != EntryKind.DIAGNOSTIC:
            raise ConfigError(f"{path}: runbook {book.name}: evidence {name} is {call.entry}, not a read-only diagnostic")
    if book.act_when:
        try:
            book._gate = compile_condition(book.act_when)
        except celpy.CELParseError as exc:
            raise ConfigError(f"{path}: runbook {book.name}: bad CEL in act_when: {exc}") from None


def _names(ctx: PlanningContext) -> dict[str, str]:
    """What `${…}` in a runbook may name: the alert's labels and annotations, its host and name, and `since`
    (seconds since the epoch; 0 when the alert's start is not known)."""
    names = {f"labels.{k}": v for k, v in ctx.labels.items()}
    names |= {f"annotations.{k}": v for k, v in ctx.annotations.items()}
    since = str(max(0, int(ctx.since.timestamp()))) if ctx.since is not None else "0"   # an alert from 1970: not negative
    return names | {"host": ctx.host, "alertname": ctx.alertname, "since": since}


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        try:
            return _Template(value).substitute(names)
        except KeyError as exc:
            raise ProposalError(f"the alert has no {exc.args[0]} to fill in") from None
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    return value


class RunbookPlanner:
    """The deterministic default planner."""

    name = "runbook"

    def __init__(self, runbooks: list[Runbook], catalog: Catalog):
        self.runbooks = runbooks
        self.catalog = catalog

    def _match(self, ctx: PlanningContext) -> Runbook | None:
        labels = {"alertname": ctx.alertname, **ctx.labels}
        return next((b for b in self.runbooks if b.matches(labels)), None)

    def matches(self, ctx: PlanningContext) -> bool:
        """Some runbook answers this alert."""
        return self._match(ctx) is not None

    def work_order(self, alertname: str, labels: dict[str, str]) -> int:
        book = next((b for b in self.runbooks if b.matches({"alertname": alertname, **labels})), None)
        return book.order if book is not None else DEFAULT_ORDER

    def binding_escalation(self, ctx: PlanningContext) -> Escalation | None:
        """An operator's `escalate` runbook for this alert: no planner may act on it."""
        book = self._match(ctx)
        if book is None or not book.escalate:
            return None
        return Escalation(reason=f"runbook {book.name}: {book.escalate}", planner=self.name)

    def writes_report(self, ctx: PlanningContext) -> bool:
        """A Level 2 runbook answers this alert: the engine writes the numbers and the proposal, no model does."""
        book = self._match(ctx)
        return book is not None and book.report is not None

    def gate_again(self, ctx: PlanningContext, proposal: ActionProposal,
                   diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome]) -> str | None:
        """Read the runbook's evidence once more (fresh, not what planning read) for a proposal of its entry, whoever
        proposed it; the reason not to run, or None."""
        book = self._match(ctx)
        if book is None or book.action is None or book._gate is None or book.action.entry != proposal.entry:
            return None
        try:
            gate = read_gate(book.evidence, book._gate, book.otherwise, diagnose, lambda p: _substitute(p, _names(ctx)),
                             book.findings)
        except ProposalError as exc:
            return exc.message
        return None if gate.act else gate.why

    def plan(self, ctx: PlanningContext, session: PlanningSession | None = None) -> ActionProposal | Escalation:
        """The first matching runbook's entry and parameters; a runbook with an evidence gate reads it first."""
        book = self._match(ctx)
        if book is None:
            return Escalation(reason=f"no runbook matches alert {ctx.alertname!r}; a person must look", planner=self.name)
        if book.escalate:
            return Escalation(reason=f"runbook {book.name}: {book.escalate}", planner=self.name)
        names = _names(ctx)
        if book.report is not None:
            return self._diagnose(book, book.report, ctx, session or PlanningSession(), names)
        assert book.action is not None
        try:
            params = _substitute(book.action.params, names)
            rationale = book.rationale or f"runbook {book.name} matches {ctx.alertname}"
            if book.evidence and book.act_when:
                diagnose = session.diagnose if session is not None else None
                if diagnose is None:
                    refused = session.refused if session is not None else None
                    held = unreachable_gate(book.evidence, refused, lambda p: _substitute(p, names)) if refused else None
                    if held:   # as serve would: its gate's read is refused before anything is read
                        return Escalation(reason=f"runbook {book.name}: {held}", planner=self.name)
                    rationale += " (its evidence gate was not read: no access to the host here)"
                else:
                    gate = read_gate(book.evidence, book._gate, book.otherwise, diagnose,
                                     lambda p: _substitute(p, names), book.findings)
                    if not gate.act:
                        return Escalation(reason=f"runbook {book.name}: {gate.why}", planner=self.name)
                    rationale += f" (the evidence shows it: {summary(gate.read)})"
                    rationale += "".join(f". {note}" for note in gate.notes)
        except ProposalError as exc:
            return Escalation(reason=f"runbook {book.name}: {exc.message}", planner=self.name)
        return ActionProposal(entry=book.action.entry, params=params, hosts=[ctx.host], rationale=rationale,
                              planner=self.name, offered=[book.action.entry])

    def _diagnose(self, book: Runbook, spec: ReportSpec, ctx: PlanningContext, session: PlanningSession,
                  names: dict[str, str]) -> ActionProposal | Escalation:
        """Level 2: the report, and its cause's catalog action for a person to decide on, or an escalation."""
        try:
            report, cause = write_report(spec, host=ctx.host, labels=ctx.labels, diagnose=session.diagnose,
                                         query=session.query, bind=lambda p: _substitute(p, names))
            params = _substitute(cause.propose.params, names) if cause is not None and cause.propose else None
        except ProposalError as exc:
            return Escalation(reason=f"runbook {book.name}: {exc.message}", planner=self.name)
        session.report = report
        if cause is None or cause.propose is None or params is None:
            pointing = "; ".join(f"{f.label}: {f.value}" for f in report.pointing)
            return Escalation(reason=f"runbook {book.name}: {spec.kind}: {report.cause}"
                              + (f" ({pointing})" if pointing else "") + f"; look first at: {report.look_first}",
                              planner=self.name)
        return ActionProposal(entry=cause.propose.entry, params=params, hosts=[ctx.host], planner=self.name,
                              rationale=f"{spec.kind}: {report.cause}", offered=[cause.propose.entry],
                              needs_person=f"a Level 2 diagnosis ({spec.kind}) proposes this; a person decides")
