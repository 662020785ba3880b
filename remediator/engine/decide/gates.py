"""Evidence gates: a runbook reads its diagnostics first and acts only when they say the fault is there.

A runbook names the read-only diagnostics it needs (`evidence:`, each under a name) and a CEL condition
over their reports (`act_when:`). The runbook planner runs them on the incident's host before it chooses:
the condition holds, it proposes its action; it does not, it escalates with `otherwise:` and the numbers it
read; a diagnostic that gives no report escalates too (never act blindly). Without access to the host
(`remediator plan --no-check`) the gate is not read, and the proposal says so.

An entry may declare a gate of its own (`gate:` in its meta/remediator.yml, over its own parameters): where no
runbook answers an alert, a model's choice of that entry runs without a person only when its gate holds.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import celpy
from celpy import celtypes
from pydantic import BaseModel, ConfigDict

from remediator.engine.catalog.loader import CatalogEntry, DiagnosticCall
from remediator.engine.decide.evidence import fill

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["EntryCall", "GateResult", "compile_condition", "read_entry_gate", "read_gate"]


class EntryCall(BaseModel):
    """A catalog entry and its parameters, as a runbook names it: params may use ${labels.X}, ${host}, ${alertname}."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entry: str
    params: dict[str, Any] = {}


class GateResult(BaseModel):
    """What the gate found: act, or why not (with the evidence, in a line a person can read)."""

    act: bool
    why: str = ""
    read: dict[str, dict[str, Any]] = {}      # name -> report


def compile_condition(text: str) -> Any:
    """A CEL program (raises celpy.CELParseError on a bad condition)."""
    env = celpy.Environment()
    return env.program(env.compile(text))


def read_gate(evidence: Mapping[str, EntryCall | DiagnosticCall], condition: Any, otherwise: str,
              diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome],
              bind: Callable[[dict[str, Any]], dict[str, Any]]) -> GateResult:
    """Run the evidence, evaluate the condition; `bind` fills the parameters from the alert."""
    read: dict[str, dict[str, Any]] = {}
    for name, call in evidence.items():
        outcome = diagnose(call.entry, bind(call.params))
        if outcome.report is None:
            return GateResult(act=False, read=read, why=f"its evidence could not be read ({call.entry}: "
                              f"{outcome.error or 'no report'}); nothing is done blind")
        read[name] = outcome.report
    try:
        verdict = condition.evaluate({k: celpy.json_to_cel(v) for k, v in read.items()})
    except celpy.CELEvalError as exc:
        return GateResult(act=False, read=read, why=f"its condition could not be evaluated on the evidence ({exc})")
    if not isinstance(verdict, celtypes.BoolType):
        return GateResult(act=False, read=read, why="its condition did not answer yes or no")
    if verdict:
        return GateResult(act=True, read=read)
    return GateResult(act=False, read=read, why=f"{otherwise} (read: {summary(read)})")


def read_entry_gate(entry: CatalogEntry, params: dict[str, Any],
                    diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome]) -> GateResult | None:
    """The entry's own gate read on the host for these (validated) parameters; None when it declares none."""
    gate = entry.meta.gate
    if gate is None:
        return None
    return read_gate(gate.evidence, _compiled(gate.act_when), gate.otherwise, diagnose, lambda p: fill(p, params))


@lru_cache(maxsize=64)
def _compiled(text: str) -> Any:
    return compile_condition(text)


def summary(read: dict[str, dict[str, Any]]) -> str:
    """The evidence's plain fields, short: `status: active_state=active, sub_state=running, …`."""
    parts = []
    for name, report in read.items():
        fields = [f"{k}={v}" for k, v in report.items() if isinstance(v, (str, int, float, bool)) and str(v)][:6]
        parts.append(f"{name}: {', '.join(fields)}")
    return "; ".join(parts)[:600]
