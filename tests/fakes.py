"""Fakes for driving the engine without Ansible or a wall clock: data in, behaviour out.

RecordedExecutor (engine/run/recorded.py) serves recorded diagnostics and, with checks=True, check runs
that change nothing; FixedClock is a clock that says what it is told; seed_history writes an eval
case's history.yml into a store, so serve and `remediator plan` see what `remediator eval` sees.
"""
from __future__ import annotations

from datetime import UTC, datetime

from engine.decide import breaker
from engine.decide.decision import RecordedHistory
from engine.model.states import IncidentState, RunMode
from engine.run.recorded import RecordedExecutor
from engine.store.db import BreakerRow, Incident, Run, Store

__all__ = ["RecordedExecutor", "FixedClock", "seed_history"]


class FixedClock:
    """Always `at` (UTC)."""

    def __init__(self, at: datetime):
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at


def seed_history(store: Store, history: RecordedHistory) -> None:
    """The recorded real runs (each under a closed incident of its own) and open breakers, into the store."""
    with store.write() as session:
        for n, run in enumerate(history.runs):
            at = run.started_at.astimezone(UTC).replace(tzinfo=None)
            incident_id = f"history-{n}"
            session.add(Incident(id=incident_id, correlation_key=f"history|{n}", alertname="History", host=run.hosts[0],
                                 severity="warning", priority=2, state=IncidentState.RESOLVED, labels={}, annotations={},
                                 entry=run.entry, created_at=at, updated_at=at, closed_at=at))
            session.flush()
            session.add(Run(incident_id=incident_id, ident=f"{incident_id}-apply", entry=run.entry, mode=RunMode.APPLY,
                            hosts=run.hosts, params=run.params, status="successful", rc=0, started_at=at, finished_at=at,
                            duration_s=1.0, artifact_dir="", summary="recorded"))
        for entry, reason in history.breakers.items():
            session.add(BreakerRow(scope=breaker.scope_of(entry), open=True, opened_at=datetime(2026, 1, 1), reason=reason))
