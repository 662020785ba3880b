"""Level 2 reports: for alert classes a restart would only hide (memory growth, latency, error rate), diagnose and
propose; a person decides.

A runbook's `report:` names the read-only diagnostics to run on the host (`evidence:`), the PromQL to ask Prometheus
(`metrics:`; only `${host}` may be filled in, quoted as a PromQL string), the numbers to show (`figures:`, CEL) and
the likely causes in order (`causes:`, each a CEL condition, the evidence that points to it, and either a catalog
action to propose or what a person should look at first). The first cause whose condition holds is the likely
cause; none holds: `unexplained`. Conditions see each diagnostic's report by its name, `metrics.NAME` (a list of
`{labels, value}`), `labels` and `host`; numbers are doubles. A condition that cannot be evaluated (evidence
missing) does not hold. The numbers, the cause and the proposal are the engine's; a model never writes them.
"""
from __future__ import annotations

import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import celpy
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from remediator.engine.catalog.loader import Catalog, EntryKind
from remediator.engine.decide.cel import compile_at, doubles, evaluate, holds, show
from remediator.engine.decide.gates import EntryCall
from remediator.engine.errors import ConfigError
from remediator.engine.model.records import Figure, Report
from remediator.engine.outbound.prometheus import PrometheusError

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["ReportCause", "ReportSpec", "Query", "write_report", "promql"]

#: (metric name, PromQL) -> series as {labels, value}; raises with a message a person can read when not answered
Query = Callable[[str, str], list[dict[str, Any]]]
_RESERVED = {"metrics", "labels", "host"}


class ReportCause(BaseModel):
    """One likely cause a report can name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: str                                   # CEL
    cause: str
    points_to: dict[str, str] = {}              # label -> CEL: the evidence that points to this cause
    propose: EntryCall | None = None            # a remediation; its dry run waits for a person
    look_first: str = ""                        # no catalog action fits: where a person starts
    _when: Any = PrivateAttr(None)
    _points: dict[str, Any] = PrivateAttr(default_factory=dict)


class ReportSpec(BaseModel):
    """A runbook's Level 2 report (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = Field(min_length=1)
    evidence: dict[str, EntryCall] = {}
    metrics: dict[str, str] = {}                # name -> PromQL, `${host}` the only name filled in
    figures: dict[str, str] = {}                # label -> CEL
    causes: list[ReportCause] = []
    unexplained: str                            # no cause holds: what a person should look at first
    _figures: dict[str, Any] = PrivateAttr(default_factory=dict)

    def check(self, where: str, catalog: Catalog) -> None:
        """Fail at start-up, naming the runbook: diagnostics only, identifiers for names, CEL that compiles."""
        for name, call in self.evidence.items():
            if not name.isidentifier() or name in _RESERVED:
                raise ConfigError(f"{where}: evidence name {name!r} must be an identifier other than {sorted(_RESERVED)}")
            _entry_of(where, catalog, call.entry, EntryKind.DIAGNOSTIC)
        for name, expr in self.metrics.items():
            if not name.isidentifier():
                raise ConfigError(f"{where}: metric name {name!r} must be an identifier (CEL uses it)")
            try:
                _PromQL(expr).substitute(host="x")
            except (KeyError, ValueError):
                raise ConfigError(f"{where}: metric {name}: only ${{host}} may be filled into PromQL") from None
        self._figures.update({label: compile_at(where, expr) for label, expr in self.figures.items()})
        for cause in self.causes:
            if cause.propose is not None and cause.look_first:
                raise ConfigError(f"{where}: cause {cause.cause!r}: give propose or look_first, not both")
            if cause.propose is None and not cause.look_first:
                raise ConfigError(f"{where}: cause {cause.cause!r}: give propose (a catalog action) or look_first")
            if cause.propose is not None:
                _entry_of(where, catalog, cause.propose.entry, EntryKind.REMEDIATION)
            cause._when = compile_at(where, cause.when)
            cause._points.update({label: compile_at(where, expr) for label, expr in cause.points_to.items()})


def _entry_of(where: str, catalog: Catalog, entry_id: str, kind: EntryKind) -> None:
    if entry_id not in catalog.entries:
        raise ConfigError(f"{where}: unknown catalog entry {entry_id!r}")
    if catalog.get(entry_id).meta.kind != kind:
        raise ConfigError(f"{where}: {entry_id} is not a {kind}")


class _PromQL(string.Template):
    idpattern = r"host"


def promql(expr: str, host: str) -> str:
    """The metric's PromQL with the host filled in as a PromQL string's content (quotes and backslashes escaped)."""
    return _PromQL(expr).substitute(host=host.replace("\\", "\\\\").replace('"', '\\"'))


def write_report(spec: ReportSpec, *, host: str, labels: dict[str, str],
                 diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome] | None, query: Query | None,
                 bind: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[Report, ReportCause | None]:
    """Read the evidence and the metrics, show the figures, name the first cause that holds (None: unexplained)."""
    unread: list[str] = []
    activation: dict[str, Any] = {"labels": celpy.json_to_cel(labels), "host": celpy.json_to_cel(host)}
    for name, call in spec.evidence.items():
        if diagnose is None:
            unread.append(f"{name} ({call.entry}): no access to the host here")
            continue
        outcome = diagnose(call.entry, bind(call.params))
        if outcome.report is None:
            unread.append(f"{name} ({call.entry}): {outcome.error or 'no report'}")
        else:
            activation[name] = celpy.json_to_cel(doubles(outcome.report))
    metrics: dict[str, Any] = {}
    for name, expr in spec.metrics.items():
        if query is None:
            unread.append(f"metric {name}: no Prometheus configured")
            continue
        try:
            metrics[name] = doubles(query(name, promql(expr, host)))
        except (PrometheusError, LookupError) as exc:   # not answered (or not recorded): shown as such, never acted on
            unread.append(f"metric {name}: {exc}")
    activation["metrics"] = celpy.json_to_cel(metrics)
    figures = [Figure(label=label, value=show(evaluate(program, activation))) for label, program in spec._figures.items()]
    for cause in spec.causes:
        if holds(cause._when, activation):
            pointing = [Figure(label=label, value=show(evaluate(p, activation))) for label, p in cause._points.items()]
            proposal = ""
            if cause.propose is not None:
                params = bind(cause.propose.params)
                proposal = f"{cause.propose.entry} " + " ".join(f"{k}={v}" for k, v in params.items())
            return Report(kind=spec.kind, figures=figures, cause=cause.cause, pointing=pointing, proposal=proposal.strip(),
                          look_first=cause.look_first, unread=unread), cause
    return Report(kind=spec.kind, figures=figures, cause="the evidence shows no cause this runbook knows",
                  look_first=spec.unexplained, unread=unread), None
