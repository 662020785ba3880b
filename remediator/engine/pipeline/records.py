"""What the pipeline writes: each step's record, one write transaction each (state, audit event, notification)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from remediator.engine.decide.evidence import DiagnosticOutcome
from remediator.engine.model.records import ActionProposal, PolicyDecision, Report, RunResult, Transcript
from remediator.engine.model.states import IncidentState, RunMode, RunState
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.notify import NotifyEvent, notify_incident
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import Incident, Run, incident_row, utcnow

__all__ = ["Records"]


class Records:
    """The pipeline's writes to the store (and the counters that go with them)."""

    def __init__(self, store: Store, lifecycle: Lifecycle, metrics: Metrics):
        self.store, self.lifecycle, self.metrics = store, lifecycle, metrics

    def braked(self, session: Session, settings: Settings, inc: Incident, opened: list[tuple[str, str]]) -> None:
        """Storm brakes this incident opened (blast.brake, in the caller's transaction): paged once each, counted."""
        for scope, why in opened:
            notify_incident(session, settings, inc, NotifyEvent.BREAKER_OPEN, why, dedup_key=f"breaker:{scope}")
            self.metrics.breaker_opened.labels(scope).inc()

    def planned(self, incident_id: str, proposal: ActionProposal, decision: PolicyDecision, found: dict[str, Any]
                 ) -> ActionProposal:
        """Record the plan and the verdict (and the evidence, when it is in already)."""
        if found:
            proposal = proposal.model_copy(update={"evidence": sorted(found)})
        with self.store.write() as session:
            row = incident_row(session, incident_id)
            row.evidence = found
            row.entry = proposal.entry
            row.proposal, row.decision = proposal, decision
            self.lifecycle.move(session, row, IncidentState.PLANNED, proposal.rationale,
                                 data={"proposal": proposal.model_dump(mode="json"),
                                       "decision": decision.model_dump(mode="json")})
        return proposal

    def with_evidence(self, incident_id: str, proposal: ActionProposal, found: dict[str, Any]) -> ActionProposal:
        """The evidence gathered beside the check run, on the incident and its proposal."""
        proposal = proposal.model_copy(update={"evidence": sorted(found)})
        with self.store.write() as session:
            row = incident_row(session, incident_id)
            row.evidence = found
            row.proposal = proposal
            audit.append(session, "incident.evidence", {"keys": sorted(found)}, incident_id)
        return proposal

    def evidence(self, incident_id: str, found: dict[str, Any]) -> None:
        """What planning read, kept with an incident that ends without a proposal (a gate that said no)."""
        with self.store.write() as session:
            incident_row(session, incident_id).evidence = found
            audit.append(session, "incident.evidence", {"keys": sorted(found)}, incident_id)

    def report(self, incident_id: str, report: Report) -> None:
        """A Level 2 diagnosis, with the incident and in the audit trail."""
        with self.store.write() as session:
            incident_row(session, incident_id).report = report
            audit.append(session, "incident.report", report.model_dump(mode="json"), incident_id)

    def diagnostic(self, incident_id: str, host: str, outcome: DiagnosticOutcome) -> None:
        if outcome.result:
            self.run(incident_id, outcome.result, RunMode.DIAGNOSE, outcome.params, [host])

    def transcript(self, incident_id: str, transcript: Transcript) -> None:
        """The planner's conversation, with the incident and (whole) in the audit trail, for replay."""
        t = transcript.model_dump(mode="json")
        with self.store.write() as db:
            incident_row(db, incident_id).transcript = t
            audit.append(db, "planner.transcript", t, incident_id)
        self.metrics.llm_tokens.labels("prompt").inc(transcript.prompt_tokens)
        self.metrics.llm_tokens.labels("completion").inc(transcript.completion_tokens)
        self.metrics.plans.labels(transcript.planner, transcript.outcome).inc()

    def begin_run(self, incident_id: str, ident: str, entry: str, mode: str, params: dict[str, Any], hosts: list[str],
                  session: Session | None = None) -> int:
        """A run's row and its `run.<mode>.started` event; in `session` when given, so that they commit with the move
        that lets the run start (a crash between two commits would say a real run was cut off that never began)."""
        if session is None:
            with self.store.write() as own:
                return self.begin_run(incident_id, ident, entry, mode, params, hosts, session=own)
        run = Run(incident_id=incident_id, ident=ident, entry=entry, mode=mode, hosts=hosts, params=params,
                  status=RunState.RUNNING, rc=None, started_at=utcnow())
        session.add(run)
        audit.append(session, f"run.{mode}.started", {"ident": ident, "entry": entry, "hosts": hosts}, incident_id)
        session.flush()
        return run.id

    def run(self, incident_id: str, result: RunResult, mode: str, params: dict[str, Any], hosts: list[str],
                    run_id: int | None = None) -> None:
        self.metrics.runs.labels(result.entry, mode, result.status.value).inc()
        self.metrics.run_seconds.labels(result.entry, mode).observe(result.duration_s)
        with self.store.write() as session:
            run = session.get(Run, run_id) if run_id is not None else None
            if run is None:
                run = Run(incident_id=incident_id, ident=result.ident, entry=result.entry, mode=mode, hosts=hosts,
                          params=params, started_at=utcnow() - timedelta(seconds=result.duration_s))
                session.add(run)
            run.status, run.rc, run.finished_at, run.duration_s = result.status.value, result.rc, utcnow(), result.duration_s
            run.artifact_dir, run.summary = result.artifact_dir, result.preview.summary[:4000]
            audit.append(session, f"run.{mode}", {"ident": result.ident, "entry": result.entry, "status": result.status.value,
                                                  "rc": result.rc, "summary": result.preview.summary[:2000],
                                                  "hosts": hosts}, incident_id)

    def move(self, incident_id: str, state: IncidentState, reason: str = "") -> None:
        with self.store.write() as session:
            self.lifecycle.move(session, incident_row(session, incident_id), state, reason)

    def close(self, incident_id: str, state: IncidentState, reason: str, *, notice: NotifyEvent | None = None,
               data: dict[str, Any] | None = None) -> None:
        with self.store.write() as session:
            inc = incident_row(session, incident_id)
            if notice is None:
                self.lifecycle.close(session, inc, state, reason, data=data)
            else:
                self.lifecycle.close(session, inc, state, reason, notice=notice, data=data)
