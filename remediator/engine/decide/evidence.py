"""Read-only evidence and verification: an entry's diagnostics before, its verify checks after.

Both run catalog diagnostics (read_only entries) through the same executor. Their parameters come
from the remediation's validated parameters by reference (`"{unit}"`), never from alert text.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.catalog.loader import Catalog, CatalogEntry, DiagnosticCall, EntryKind, VerifyCheck
from remediator.engine.decide.scope import out_of_scope
from remediator.engine.errors import ProposalError
from remediator.engine.model.records import RunResult
from remediator.engine.run.runner import Executor

__all__ = ["bind_params", "fill", "DiagnosticOutcome", "Evidence", "VerifyOutcome", "run_verify", "verify_reads",
           "expectation_met", "METRIC", "entry_of"]

#: an evidence key that holds what Prometheus answered (`metric:<name>`), not a diagnostic's report
METRIC = "metric:"

_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def bind_params(call: DiagnosticCall, params: dict[str, Any]) -> dict[str, Any]:
    """Fill `{name}` references with the remediation's parameters; a whole-string reference keeps its type."""
    return fill(call.params, params)


def fill(template: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """`template`'s `{name}` references filled from `params` (bind_params on a call's parameters)."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if isinstance(value, str):
            whole = _REF.fullmatch(value)
            if whole:
                out[key] = params[whole.group(1)]
            else:
                out[key] = _REF.sub(lambda m: str(params[m.group(1)]), value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class DiagnosticOutcome:
    entry: str
    params: dict[str, Any]
    result: RunResult | None
    report: dict[str, Any] | None
    error: str = ""
    beyond: str = ""          # not read: what it would read is outside the host's allow-lists (scope.py)


def _run(executor: Executor, entry: CatalogEntry, params: dict[str, Any], host: str, ident: str, timeout_s: int,
         cancel: threading.Event | None) -> DiagnosticOutcome:
    try:
        validated = entry.validate_params(params)
    except ProposalError as exc:
        return DiagnosticOutcome(entry.id, params, None, None, error=exc.message)
    result = executor.run(entry, validated, [host], check=False, ident=ident, timeout_s=timeout_s, cancel=cancel)
    return _outcome(entry, validated, result, host)


def _outcome(entry: CatalogEntry, validated: dict[str, Any], result: RunResult, host: str) -> DiagnosticOutcome:
    report = result.reports.get(host)
    error = "" if report is not None else result.preview.summary
    if report is not None:   # a read-only run "changes nothing" by design; say what it did instead
        summary = f"{entry.id}: {host}: reported ({', '.join(sorted(report)[:6])}); read-only"
        result = result.model_copy(update={"preview": result.preview.model_copy(update={"summary": summary})})
    return DiagnosticOutcome(entry.id, validated, result, report, error)


def refused_read(entry: CatalogEntry, params: dict[str, Any], host: str, inventory: Inventory | None) -> str | None:
    """Reading is bounded too: why a journal or a tree the inventory does not list is not read (its `scope:`)."""
    return out_of_scope(entry, params, host, inventory) if inventory is not None else None


def refusal(catalog: Catalog, host: str, inventory: Inventory) -> Callable[[str, dict[str, Any]], str | None]:
    """For a planner without access to the host: (diagnostic, parameters) -> why reading it would be refused."""
    def refused(entry_id: str, params: dict[str, Any]) -> str | None:
        try:
            entry = catalog.get(entry_id)
            return refused_read(entry, entry.validate_params(params), host, inventory)
        except ProposalError:
            return None   # not for the scope to say: reading would fail, and the gate with it
    return refused


class Evidence:
    """The read-only diagnostics run for one incident on its host, each (entry, parameters) at most once.

    The LLM planner asks through `diagnose` while it plans; the pipeline then asks for the chosen
    remediation's own diagnostics, and what the model already read is not run again.
    """

    def __init__(self, executor: Executor, catalog: Catalog, host: str, ident_prefix: str, timeout_s: int,
                 cancel: threading.Event | None = None, on_run: Callable[[DiagnosticOutcome], None] | None = None,
                 inventory: Inventory | None = None):
        self.executor, self.catalog, self.host, self.inventory = executor, catalog, host, inventory
        self.ident_prefix, self.timeout_s, self.cancel, self.on_run = ident_prefix, timeout_s, cancel, on_run
        self.outcomes: dict[str, DiagnosticOutcome] = {}
        self.metrics: dict[str, dict[str, Any]] = {}   # what Prometheus answered a Level 2 report, by metric name

    def asking(self, query: Callable[[str, str], list[dict[str, Any]]] | None
               ) -> Callable[[str, str], list[dict[str, Any]]] | None:
        """`query`, keeping each answer (or why there was none) with this evidence: a report's figures can then be
        read again, and replayed (an eval case recorded from the incident), from what it was shown."""
        if query is None:
            return None

        def ask(name: str, expr: str) -> list[dict[str, Any]]:
            try:
                series = query(name, expr)
            except Exception as exc:   # kept, and raised on: the report shows it as unread
                self.metrics[name] = {"params": {"promql": expr}, "report": None, "error": str(exc)}
                raise
            self.metrics[name] = {"params": {"promql": expr}, "report": {"series": series}, "error": ""}
            return series
        return ask

    def diagnose(self, entry_id: str, params: dict[str, Any]) -> DiagnosticOutcome:
        """Run one diagnostic (or return the earlier answer to the same question)."""
        try:
            entry = self.catalog.get(entry_id)
            if entry.meta.kind != EntryKind.DIAGNOSTIC:
                raise ProposalError(f"{entry_id} is not a read-only diagnostic")
            validated = entry.validate_params(params)
        except ProposalError as exc:
            return DiagnosticOutcome(entry_id, params, None, None, error=exc.message)
        beyond = refused_read(entry, validated, self.host, self.inventory)
        key = entry_id + json.dumps(validated, sort_keys=True, default=str)
        if beyond is not None:   # kept with the evidence, so the incident says what was not read and why
            self.outcomes.setdefault(key, DiagnosticOutcome(entry_id, validated, None, None, error=f"not read: {beyond}",
                                                            beyond=beyond))
        if key not in self.outcomes:
            outcome = _run(self.executor, entry, validated, self.host,
                           f"{self.ident_prefix}-diag{len(self.outcomes)}-{entry_id}", self.timeout_s, self.cancel)
            self.outcomes[key] = outcome
            if self.on_run is not None:
                self.on_run(outcome)
        return self.outcomes[key]

    def for_remediation(self, remediation: CatalogEntry, params: dict[str, Any]) -> None:
        """Every diagnostic the remediation names, with parameters bound from its own."""
        for call in remediation.meta.diagnostics:
            try:
                bound = bind_params(call, params)
            except KeyError as exc:
                self.outcomes[f"{call.entry}:unbound"] = DiagnosticOutcome(call.entry, {}, None, None,
                                                                           error=f"no parameter {exc.args[0]} to pass")
                continue
            self.diagnose(call.entry, bound)

    def as_dict(self) -> dict[str, Any]:
        """Evidence as stored with the incident: by entry id (a second call of one entry gets `#2`), then each metric a
        report asked Prometheus for (`metric:<name>`)."""
        out: dict[str, Any] = {}
        for outcome in self.outcomes.values():
            key, n = outcome.entry, 1
            while key in out:
                n += 1
                key = f"{outcome.entry}#{n}"
            out[key] = {"params": outcome.params, "report": outcome.report, "error": outcome.error}
        return out | {f"{METRIC}{name}": answer for name, answer in self.metrics.items()}


def entry_of(key: str) -> str:
    """The diagnostic an evidence key (as_dict: `entry`, `entry#2`) holds the report of."""
    return key.partition("#")[0]


def expectation_met(expect: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """The fields that differ from what was expected (empty: the check passes)."""
    misses = []
    for key, want in expect.items():
        have = report.get(key)
        if isinstance(want, bool):
            same = str(have).lower() == str(want).lower()
        elif isinstance(want, int):
            try:
                same = int(have) == want  # type: ignore[arg-type]
            except (TypeError, ValueError):
                same = False
        else:
            same = str(have) == str(want)
        if not same:
            misses.append(f"{key} is {have!r}, expected {want!r}")
    return misses


@dataclass(frozen=True)
class VerifyOutcome:
    ok: bool
    detail: str
    results: list[RunResult]
    attempts: int


def verify_reads(catalog: Catalog, remediation: CatalogEntry, params: dict[str, Any]) -> list[tuple[CatalogEntry, dict]]:
    """The verify checks' diagnostics with their parameters, to run right after the real run in its invocation
    (the first attempt); none when one cannot be bound or validated (run_verify then says why)."""
    reads = []
    for check in remediation.meta.verify:
        try:
            entry = catalog.get(check.entry)
            reads.append((entry, entry.validate_params(bind_params(check, params))))
        except (KeyError, ProposalError):
            return []
    return reads


def run_verify(executor: Executor, catalog: Catalog, remediation: CatalogEntry, params: dict[str, Any], host: str,
               ident_prefix: str, timeout_s: int, attempts: int = 5, interval_s: float = 3.0,
               cancel: threading.Event | None = None, first: Sequence[RunResult] = ()) -> VerifyOutcome:
    """Run the entry's verify checks until all pass or the attempts run out (a service needs a moment).
    `first`: the checks' runs that followed the real run in its invocation (verify_reads), as attempt 1."""
    checks: list[VerifyCheck] = remediation.meta.verify
    first = first if len(first) == len(checks) and all(r.entry == c.entry for r, c in zip(first, checks, strict=False)) else ()
    if not checks:
        return VerifyOutcome(True, f"{remediation.id} declares no verify step; the run's success is the check", [], 0)
    results: list[RunResult] = []
    detail = ""
    for attempt in range(1, attempts + 1):
        misses: list[str] = []
        for i, check in enumerate(checks):
            if attempt == 1 and first:
                entry = catalog.get(check.entry)
                outcome = _outcome(entry, entry.validate_params(bind_params(check, params)), first[i], host)
            else:
                outcome = _run(executor, catalog.get(check.entry), bind_params(check, params), host,
                               f"{ident_prefix}-verify{attempt}-{i}-{check.entry}", timeout_s, cancel)
            if outcome.result:
                results.append(outcome.result)
            if outcome.report is None:
                misses.append(f"{check.entry}: no report ({outcome.error})")
            else:
                misses += [f"{check.entry}: {m}" for m in expectation_met(check.expect, outcome.report)]
        if not misses:
            return VerifyOutcome(True, f"verified on attempt {attempt}: " + ", ".join(
                f"{c.entry} {c.expect}" for c in checks), results, attempt)
        detail = "; ".join(misses)
        if cancel is not None and cancel.is_set():
            break
        if attempt < attempts:
            time.sleep(interval_s)
    return VerifyOutcome(False, f"not fixed after {attempts} checks: {detail}", results, attempts)
