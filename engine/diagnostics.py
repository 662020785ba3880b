"""Read-only evidence and verification: an entry's diagnostics before, its verify checks after.

Both run catalog diagnostics (read_only entries) through the same executor. Their parameters come
from the remediation's validated parameters by reference (`"{unit}"`), never from alert text.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.catalog import Catalog, CatalogEntry, DiagnosticCall, VerifyCheck
from engine.errors import ProposalError
from engine.models import RunResult
from engine.runner import Executor

__all__ = ["bind_params", "DiagnosticOutcome", "run_diagnostics", "VerifyOutcome", "run_verify", "expectation_met"]

_REF = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def bind_params(call: DiagnosticCall, params: dict[str, Any]) -> dict[str, Any]:
    """Fill `{name}` references with the remediation's parameters; a whole-string reference keeps its type."""
    out: dict[str, Any] = {}
    for key, value in call.params.items():
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


def _run(executor: Executor, entry: CatalogEntry, params: dict[str, Any], host: str, ident: str, timeout_s: int,
         cancel: threading.Event | None) -> DiagnosticOutcome:
    try:
        validated = entry.validate_params(params)
    except ProposalError as exc:
        return DiagnosticOutcome(entry.id, params, None, None, error=exc.message)
    result = executor.run(entry, validated, [host], check=False, ident=ident, timeout_s=timeout_s, cancel=cancel)
    report = result.reports.get(host)
    error = "" if report is not None else result.preview.summary
    return DiagnosticOutcome(entry.id, validated, result, report, error)


def run_diagnostics(executor: Executor, catalog: Catalog, remediation: CatalogEntry, params: dict[str, Any],
                    host: str, ident_prefix: str, timeout_s: int, cancel: threading.Event | None = None
                    ) -> list[DiagnosticOutcome]:
    """Run every diagnostic the remediation names, on its host; failures become evidence too."""
    outcomes = []
    for i, call in enumerate(remediation.meta.diagnostics):
        try:
            bound = bind_params(call, params)
        except KeyError as exc:
            outcomes.append(DiagnosticOutcome(call.entry, {}, None, None, error=f"no parameter {exc.args[0]} to pass"))
            continue
        outcomes.append(_run(executor, catalog.get(call.entry), bound, host, f"{ident_prefix}-diag{i}-{call.entry}",
                             timeout_s, cancel))
    return outcomes


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


def run_verify(executor: Executor, catalog: Catalog, remediation: CatalogEntry, params: dict[str, Any], host: str,
               ident_prefix: str, timeout_s: int, attempts: int = 5, interval_s: float = 3.0,
               cancel: threading.Event | None = None) -> VerifyOutcome:
    """Run the entry's verify checks until all pass or the attempts run out (a service needs a moment)."""
    checks: list[VerifyCheck] = remediation.meta.verify
    if not checks:
        return VerifyOutcome(True, f"{remediation.id} declares no verify step; the run's success is the check", [], 0)
    results: list[RunResult] = []
    detail = ""
    for attempt in range(1, attempts + 1):
        misses: list[str] = []
        for i, check in enumerate(checks):
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
