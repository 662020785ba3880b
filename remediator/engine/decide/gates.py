"""Evidence gates: a runbook reads its diagnostics first and acts only when they say the fault is there.

A runbook names the read-only diagnostics it needs (`evidence:`, each under a name) and a CEL condition
over their reports (`act_when:`). The runbook planner runs them on the incident's host before it chooses:
the condition holds, it proposes its action; it does not, it escalates with `otherwise:` and the numbers it
read; a diagnostic that gives no report escalates too (never act blindly). Without access to the host
(`remediator plan --no-check`) the gate is not read, and the proposal says so.

`findings:` are what else the same evidence may show, each a CEL condition with a line for the person and the
fields that point to it: a finding that `holds` the action escalates even where `act_when` holds (a unit that fails
right after it starts is not restarted again), the others are added to the proposal's rationale (the kernel's
OOM killer ended it).

An entry may declare a gate of its own (`gate:` in its meta/remediator.yml, over its own parameters): where no
runbook answers an alert, a model's choice of that entry runs without a person only when its gate holds.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import celpy
from celpy import celtypes
from pydantic import BaseModel, ConfigDict, PrivateAttr

from remediator.engine.catalog.loader import CatalogEntry, DiagnosticCall
from remediator.engine.decide.cel import compile_at, compile_condition, doubles, evaluate, holds, show
from remediator.engine.decide.evidence import fill

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["EntryCall", "Finding", "GateResult", "compile_condition", "read_entry_gate", "read_gate"]


class EntryCall(BaseModel):
    """A catalog entry and its parameters, as a runbook names it: params may use ${labels.X}, ${host}, ${alertname}."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entry: str
    params: dict[str, Any] = {}


class Finding(BaseModel):
    """What the gate's evidence may also show: a line a person reads, and whether it holds the action."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: str                                   # CEL over the evidence (numbers are doubles)
    says: str
    points_to: dict[str, str] = {}              # label -> CEL: the fields shown with the line
    hold: bool = False                          # it holds: escalate with this line instead of acting
    _when: Any = PrivateAttr(None)
    _points: dict[str, Any] = PrivateAttr(default_factory=dict)

    def compile(self, where: str) -> None:
        """Compile its CEL at load; a ConfigError names `where`."""
        self._when = compile_at(where, self.when)
        self._points.update({label: compile_at(where, expr) for label, expr in self.points_to.items()})

    def line(self, activation: dict[str, Any]) -> str | None:
        """What it says with the fields that point to it, or None when it does not hold on this evidence."""
        if not holds(self._when, activation):
            return None
        points = "; ".join(f"{label}: {show(v)}" for label, p in self._points.items()
                           if (v := evaluate(p, activation)) is not None and show(v))
        return f"{self.says} ({points})" if points else self.says


class GateResult(BaseModel):
    """What the gate found: act, or why not (with the evidence, in a line a person can read)."""

    act: bool
    why: str = ""
    read: dict[str, dict[str, Any]] = {}      # name -> report
    notes: list[str] = []                     # the findings that hold and do not hold the action


def beyond_why(beyond: str) -> str:
    """Why a gate whose read is outside the host's allow-lists holds the action."""
    return (f"{beyond}: remediator may neither read nor act on it there, so nothing was done; a person must look (list "
            "it in the inventory if remediator should handle it)")


def unreachable_gate(evidence: Mapping[str, EntryCall | DiagnosticCall], refused: Callable[[str, dict[str, Any]], str | None],
                     bind: Callable[[dict[str, Any]], dict[str, Any]]) -> str | None:
    """Without access to the host (`remediator plan --no-check`): why the gate would hold the action anyway, since
    a read outside the allow-lists is refused without reading (None: only reading could tell)."""
    for call in evidence.values():
        if (beyond := refused(call.entry, bind(call.params))) is not None:
            return beyond_why(beyond)
    return None


def read_gate(evidence: Mapping[str, EntryCall | DiagnosticCall], condition: Any, otherwise: str,
              diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome],
              bind: Callable[[dict[str, Any]], dict[str, Any]], findings: Sequence[Finding] = ()) -> GateResult:
    """Run the evidence, evaluate the condition and the findings; `bind` fills the parameters from the alert."""
    read: dict[str, dict[str, Any]] = {}
    for name, call in evidence.items():
        outcome = diagnose(call.entry, bind(call.params))
        if outcome.beyond:   # not a failure to read: what the alert is about is outside what this host allows
            return GateResult(act=False, read=read, why=beyond_why(outcome.beyond))
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
    activation = {k: celpy.json_to_cel(doubles(v)) for k, v in read.items()}
    held = [line for f in findings if f.hold and (line := f.line(activation))]
    notes = [line for f in findings if not f.hold and (line := f.line(activation))]
    if held:
        return GateResult(act=False, read=read, notes=notes, why="; ".join(held))
    if verdict:
        return GateResult(act=True, read=read, notes=notes)
    return GateResult(act=False, read=read, notes=notes, why="; ".join([f"{otherwise} (read: {summary(read)})", *notes]))


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
