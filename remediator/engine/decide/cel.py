"""CEL as runbooks use it: compile a condition, evaluate it over evidence, show a value to a person.

Gates (`act_when`, `findings`) and Level 2 reports (`figures`, `causes`) share these, so a number reads the same in
a gate's line and in a report.
"""
from __future__ import annotations

from typing import Any

import celpy
from celpy import celtypes

from remediator.engine.errors import ConfigError

__all__ = ["compile_condition", "compile_at", "doubles", "evaluate", "holds", "show", "SAID_ALREADY"]

#: series labels an alert names already: not repeated when a series is shown
SAID_ALREADY = {"__name__", "job", "instance", "host", "service"}


def compile_condition(text: str) -> Any:
    """A CEL program (raises celpy.CELParseError on a bad condition)."""
    env = celpy.Environment()
    return env.program(env.compile(text))


def compile_at(where: str, expr: str) -> Any:
    """compile_condition, failing at start-up with a ConfigError that names where the expression is."""
    try:
        return compile_condition(expr)
    except celpy.CELParseError as exc:
        raise ConfigError(f"{where}: bad CEL {expr!r}: {exc}") from None


def doubles(value: Any) -> Any:
    """JSON with every number a double: CEL compares double with int, but not int with double."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [doubles(v) for v in value]
    return value


def evaluate(program: Any, activation: dict[str, Any]) -> Any:
    """The CEL value, or None when it cannot be evaluated on this evidence (a field missing, a list empty)."""
    try:
        return program.evaluate(activation)
    except (celpy.CELEvalError, TypeError, KeyError, IndexError):
        return None


def holds(program: Any, activation: dict[str, Any]) -> bool:
    """The condition evaluates to true (one that cannot be evaluated does not hold)."""
    verdict = evaluate(program, activation)
    return isinstance(verdict, celtypes.BoolType) and bool(verdict)


def show(value: Any) -> str:
    """A value as a person reads it: numbers rounded, series as `labels value`, records as `k=v`; capped."""
    if value is None:
        return "not read"
    if isinstance(value, (bool, celtypes.BoolType)):   # CEL's bool is an int, not a bool
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, dict):
        if set(value) == {"labels", "value"}:
            tags = ",".join(f"{v}" for k, v in sorted(value["labels"].items()) if k not in SAID_ALREADY)
            return f"{tags} {show(value['value'])}".strip()
        return ", ".join(f"{k}={show(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))[:300]
    if isinstance(value, list):
        shown = "; ".join(show(v) for v in value[:5])
        return (shown + (f" (+{len(value) - 5} more)" if len(value) > 5 else "") or "none")[:300]
    return str(value)[:300]
