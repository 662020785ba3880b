"""Fakes for driving the engine without Ansible or a wall clock: data in, behaviour out.

- RecordedExecutor (remediator/engine/run/recorded.py) serves recorded diagnostics and, with checks=True, check runs
  that change nothing; ScriptedExecutor plays a whole remediation (reports in order, a check run's recorded
  events, a real run that succeeds).
- RecordingNotifier delivers the outbox to a list instead of Slack and PagerDuty.
- take_in stores a webhook and takes it into incidents at once; FixedClock says what it is told;
  seed_history writes an eval case's history.yml into a store, so serve and `remediator plan` see what
  `remediator eval` sees.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from remediator.engine.catalog.loader import CatalogEntry
from remediator.engine.decide import breaker
from remediator.engine.decide.decision import RecordedHistory
from remediator.engine.intake.inbox import IntakeResult, accept, parse_payload
from remediator.engine.model.records import Preview, RunResult, RunStatus
from remediator.engine.model.states import IncidentState, RunMode
from remediator.engine.outbound.notify import Notification
from remediator.engine.run.preview import build_preview
from remediator.engine.run.recorded import RecordedExecutor
from remediator.engine.service import Engine
from remediator.engine.store.db import Store
from remediator.engine.store.tables import BreakerRow, Incident, OutboxMessage, Run, utcnow

__all__ = ["take_in", "RecordedExecutor", "ScriptedExecutor", "RecordingNotifier", "FixedClock", "seed_history"]


def work_all(engine: Engine) -> None:
    """What the worker threads do, in this thread: work every claimable incident until none is left."""
    while (incident_id := engine.pipeline.claim()) is not None:
        engine.pipeline.work(incident_id)


def take_in(engine: Engine, body: bytes, sender: str = "alertmanager") -> IntakeResult:
    """A webhook body stored and taken into incidents in this thread (serve acknowledges first and takes it in on
    its ingester's thread); what it became, at once."""
    return accept(engine.inbox, parse_payload(body), engine.inventory, engine.lifecycle, sender)


class FixedClock:
    """Always `at` (UTC)."""

    def __init__(self, at: datetime):
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at


def seed_history(store: Store, history: RecordedHistory) -> None:
    """The recorded real runs (each under a closed incident of its own: resolved when verified, else failed) and open
    breakers, into the store."""
    with store.write() as session:
        for n, run in enumerate(history.runs):
            at = run.started_at.astimezone(UTC).replace(tzinfo=None)
            incident_id = f"history-{n}"
            session.add(Incident(id=incident_id, correlation_key=f"history|{n}", alertname="History", host=run.hosts[0],
                                 severity="warning", priority=2, labels={}, annotations={},
                                 state=IncidentState.RESOLVED if run.verified else IncidentState.FAILED,
                                 entry=run.entry, created_at=at, updated_at=at, closed_at=at))
            session.flush()
            session.add(Run(incident_id=incident_id, ident=f"{incident_id}-apply", entry=run.entry, mode=RunMode.APPLY,
                            hosts=run.hosts, params=run.params, status="successful", rc=0, started_at=at, finished_at=at,
                            duration_s=1.0, artifact_dir="", summary="recorded"))
        for entry, reason in history.breakers.items():
            session.add(BreakerRow(scope=breaker.scope_of(entry), open=True, opened_at=datetime(2026, 1, 1), reason=reason))


class ScriptedExecutor:
    """Plays a remediation without Ansible: each diagnostic answers its reports in order (the last one again
    when they run out), a check run answers the Preview of the recorded events given for its entry, a real
    run succeeds. Every call is kept in `calls` as (entry, mode)."""

    def __init__(self, reports: dict[str, list[dict[str, Any]]], checks: dict[str, list[dict[str, Any]]]):
        self.reports = {k: list(v) for k, v in reports.items()}
        self.checks = checks
        self.calls: list[tuple[str, str]] = []

    def run(self, entry: CatalogEntry, params: dict[str, Any], hosts: list[str], *, check: bool, ident: str,
            timeout_s: int, cancel: Any = None, then: Any = ()) -> RunResult:
        result = self._one(entry, hosts, check=check, ident=ident)
        return result.model_copy(update={"then": [self._one(e, hosts, check=False, ident=f"{ident}-then{i}")
                                                  for i, (e, _) in enumerate(then)]})

    def _one(self, entry: CatalogEntry, hosts: list[str], *, check: bool, ident: str) -> RunResult:
        mode = "diagnose" if entry.meta.read_only else ("check" if check else "apply")
        self.calls.append((entry.id, mode))
        if entry.meta.read_only:
            queue = self.reports.get(entry.id, [])
            report = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else None)
            preview = Preview(entry=entry.id, hosts=[], summary=f"{entry.id}: scripted", ok=report is not None)
            return RunResult(ident=ident, entry=entry.id, check=check, rc=0 if report else 4,
                             status=RunStatus.SUCCESSFUL if report else RunStatus.FAILED, preview=preview,
                             reports={h: report for h in hosts} if report else {}, artifact_dir="", duration_s=0.0)
        if check:
            events = [{**e, "event_data": {**e.get("event_data", {}), "host": hosts[0]}} for e in self.checks[entry.id]]
            preview = build_preview(entry.id, events, check=True, hosts=hosts)   # the recorded run, on this host
        else:
            preview = Preview(entry=entry.id, hosts=[], summary=f"{entry.id}: done (scripted)", ok=True)
        return RunResult(ident=ident, entry=entry.id, check=check, status=RunStatus.SUCCESSFUL, rc=0, preview=preview,
                         artifact_dir="", duration_s=0.0)

    def stop_on_hosts(self, hosts: list[str], ident: str) -> str:
        self.calls.append((ident, "stop"))
        return "nothing of the run was running (scripted)."

    def close(self) -> None:
        """Nothing to stop."""


class RecordingNotifier:
    """Takes the outbox as a Notifier would and keeps each notification (no HTTP)."""

    def __init__(self, store: Store):
        self.store = store
        self.sent: list[tuple[str, Notification]] = []

    def deliver_due(self) -> int:
        with self.store.write() as session:
            due = session.execute(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))
                                  .order_by(OutboxMessage.id)).scalars().all()
            for row in due:
                self.sent.append((row.channel, Notification.model_validate(row.payload)))
                row.sent_at = utcnow()
        return len(due)

    def events(self, channel: str | None = None) -> list[str]:
        self.deliver_due()
        return [n.event.value for c, n in self.sent if channel in (None, c)]
