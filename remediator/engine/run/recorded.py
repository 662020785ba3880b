"""An executor that runs nothing: recorded diagnostic reports, and (optionally) check runs that change nothing.

The eval serves recorded cases with it; tests drive the pipeline through the store with it, no Ansible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remediator.engine.catalog.loader import CatalogEntry
from remediator.engine.errors import ProposalError
from remediator.engine.model.records import Preview, RunResult, RunStatus
from remediator.engine.run.runner import Then

__all__ = ["RecordedExecutor", "Answer"]


@dataclass(frozen=True)
class Answer:
    """A diagnostic's report as it answered these parameters (an incident's evidence, recorded)."""

    entry: str
    params: dict[str, Any]
    report: dict[str, Any]

    def answers(self, entry: CatalogEntry, params: dict[str, Any]) -> bool:
        """The same question: the same entry reading the same things (its scoped parameters: units, paths). How it
        reads them (a window, how many lines) may differ: those follow the clock, which a replay does not share. An
        entry without scoped parameters reads the host as a whole: any of its answers serves."""
        return entry.id == self.entry and all(self.params.get(s.param) == params.get(s.param) for s in entry.meta.scope)


class RecordedExecutor:
    """Serves recorded diagnostic reports and logs each request.

    A remediation is refused, unless `checks` is set: then its check-mode run succeeds and would change
    nothing. A real run of a remediation is never made: it fails, saying so."""

    def __init__(self, reports: dict[str, dict[str, Any]], *, checks: bool = False, answers: list[Answer] | None = None):
        self.reports = reports           # entry -> its report, whatever it is asked
        self.answers = answers or []     # reports per question: an entry with some here answers no other question
        self.checks = checks
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def run(self, entry: CatalogEntry, params: dict[str, Any], hosts: list[str], *, check: bool, ident: str,
            timeout_s: int, cancel: Any = None, then: Then = ()) -> RunResult:
        result = self._one(entry, params, hosts, check=check, ident=ident)
        if not then:
            return result
        return result.model_copy(update={"then": [self._one(e, p, hosts, check=False, ident=f"{ident}-then{i}-{e.id}")
                                                  for i, (e, p) in enumerate(then)]})

    def _one(self, entry: CatalogEntry, params: dict[str, Any], hosts: list[str], *, check: bool, ident: str
             ) -> RunResult:
        if not entry.meta.read_only:
            if not self.checks:
                raise ProposalError(f"the eval never runs {entry.id}: it is not read-only")
            ok = check
            summary = f"{entry.id}: would change nothing (recorded)" if check else f"{entry.id}: never run for real here"
            return RunResult(ident=ident, entry=entry.id, check=check,
                             status=RunStatus.SUCCESSFUL if ok else RunStatus.FAILED, rc=0 if ok else 1,
                             preview=Preview(entry=entry.id, hosts=[], summary=summary, ok=ok), artifact_dir="",
                             duration_s=0.0)
        self.asked.append((entry.id, params))
        report = self._report(entry, params)
        summary = f"{entry.id}: recorded report" if report is not None else f"{entry.id}: host unreachable (nothing recorded)"
        return RunResult(ident=ident, entry=entry.id, check=check,
                         status=RunStatus.SUCCESSFUL if report is not None else RunStatus.FAILED, rc=0 if report else 4,
                         preview=Preview(entry=entry.id, hosts=[], summary=summary, ok=report is not None),
                         reports={h: report for h in hosts} if report is not None else {}, artifact_dir="", duration_s=0.0)

    def _report(self, entry: CatalogEntry, params: dict[str, Any]) -> dict[str, Any] | None:
        mine = [a for a in self.answers if a.entry == entry.id]
        if not mine:
            return self.reports.get(entry.id)
        return next((a.report for a in mine if a.answers(entry, params)), None)

    def stop_on_hosts(self, hosts: list[str], ident: str) -> str:
        return "nothing runs on a host here (recorded)."

    def close(self) -> None:
        """Nothing to stop."""
