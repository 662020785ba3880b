"""The evidence as a person reads it on the pages: each read as a heading, its plain fields as facts, its lists of
records as tables, its log lines with repeats folded (a crash loop's 50 lines are a few, each with how often), and
what was not read said as such. The stored evidence is unchanged; this is only how the pages show it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from remediator.engine.decide.evidence import METRIC

__all__ = ["Section", "Table", "Line", "readable"]

# "2026-12-05T07:03:36+0000 app-server-02 python3[56029]: message": the message, without when, where and which pid
_JOURNAL = re.compile(r"^(?P<at>\d{4}-\d\d-\d\dT\S+) \S+ (?P<unit>[^\s\[:]+)(?:\[\d+\])?: (?P<message>.*)$")


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Line:
    text: str           # the first such line, whole
    count: int = 1      # how many lines said the same (their time and pid aside)
    last_at: str = ""


@dataclass
class Section:
    title: str
    params: str = ""
    note: str = ""                                           # not read, and why; or what an empty answer means
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    lines: dict[str, list[Line]] = field(default_factory=dict)


def readable(evidence: dict[str, Any]) -> list[Section]:
    """One section per read, in the order they were stored."""
    return [_section(key, item) for key, item in evidence.items() if isinstance(item, dict)]


def _section(key: str, item: dict[str, Any]) -> Section:
    if key == "prometheus":   # the alert's own series, as gather() stores them
        s = Section("the alert's series in Prometheus", params=str(item.get("expr", "")))
        _series(s, item.get("series"), item.get("error"))
        return s
    params = item.get("params") or {}
    shown = ", ".join(f"{k}={v}" for k, v in params.items() if k != "promql")
    if key.startswith(METRIC):
        s = Section(f"metric {key.removeprefix(METRIC)}", params=str(params.get("promql", "")))
        _series(s, (item.get("report") or {}).get("series"), item.get("error"))
        return s
    s = Section(key, params=shown)
    report = item.get("report")
    if report is None:
        s.note = f"not read: {item.get('error') or 'no report'}"
        return s
    for name, value in report.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            s.lines[name] = fold(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            s.tables.append(Table(name, columns, [[_text(v.get(c)) for c in columns] for v in value]))
        else:
            s.facts.append((name, _text(value) if value not in ([], {}) else "none"))
    return s


def _series(s: Section, series: Any, error: Any) -> None:
    if error:
        s.note = f"not read: {error}"
    elif not series:
        s.note = ("no series: Prometheus had none for this query when it was read (nothing matched, or the target "
                  "was not scraped yet)")
    else:
        labels = list(dict.fromkeys(k for x in series for k in (x.get("labels") or {}) if k != "__name__"))
        s.tables.append(Table("series", [*labels, "value"],
                              [[_text((x.get("labels") or {}).get(k)) for k in labels] + [_text(x.get("value"))]
                               for x in series]))


def fold(lines: list[str]) -> list[Line]:
    """Log lines with the ones that say the same folded into the first, counted (in order of first appearance)."""
    out: dict[str, Line] = {}
    for raw in lines:
        m = _JOURNAL.match(raw)
        key = f"{m['unit']}: {m['message']}" if m else raw
        if key in out:
            out[key].count += 1
            out[key].last_at = m["at"] if m else ""
        else:
            out[key] = Line(raw)
    return list(out.values())


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)
