"""The pipeline: workers take incidents from the store and move them, step by step, to a final state.

    received -> diagnosing -> planned -> denied | awaiting_approval | checking
    approved -> checking (again) -> executing -> verifying -> resolved | failed | escalated

Every step is one write transaction: the state change, its audit event and its notifications
commit together. Ansible runs happen between transactions, never inside one. A worker claims the
most urgent incident whose host has nothing else in flight (one remediation per host at a time,
whichever entry), and `workers` bounds how many run at once.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from engine.catalog.loader import Catalog
from engine.decide.decision import Clock, Situation, StoreHistory, decide, gather, system_clock
from engine.decide.evidence import DiagnosticOutcome, Evidence, run_verify
from engine.decide.planners import Planner
from engine.decide.policy import Policy
from engine.errors import StoreUnavailable
from engine.intake import incidents
from engine.intake.targets import Inventory
from engine.model.records import ActionProposal, PolicyDecision, RunResult, RunStatus, Transcript, Verdict
from engine.model.states import HELD_STATES, IncidentState
from engine.outbound.metrics import Metrics
from engine.outbound.notify import NotifyEvent
from engine.outbound.prometheus import Prometheus, alert_expression
from engine.people import approvals
from engine.pipeline.lifecycle import Lifecycle
from engine.run.runner import Executor
from engine.settings import Settings
from engine.store import audit
from engine.store.db import Approval, Incident, Run, Store, utcnow

__all__ = ["Pipeline"]


class _ShuttingDown(Exception):
    """A run was cancelled because remediator is stopping."""

log = logging.getLogger(__name__)

#: Before the real run nothing has changed on a host, so after a crash these are simply worked again.
_CLAIMABLE = [IncidentState.RECEIVED.value, IncidentState.APPROVED.value]
_REQUEUE_ON_START = {IncidentState.DIAGNOSING, IncidentState.PLANNED, IncidentState.CHECKING}


class Pipeline:
    def __init__(self, *, settings: Settings, store: Store, catalog: Catalog, inventory: Inventory, planner: Planner,
                 policy: Policy, executor: Executor, metrics: Metrics, lifecycle: Lifecycle,
                 clock: Clock = system_clock):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.planner = planner
        self.policy = policy
        self.executor = executor
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.clock = clock
        self.history = StoreHistory(store)
        self.prometheus = Prometheus(settings.prometheus_url) if settings.prometheus_url else None
        self._stop = threading.Event()
        self._cancel = threading.Event()     # handed to every ansible-runner run: set on shutdown
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.max_drift_requests = 3         # approval requests per incident before a drifting dry run escalates
        self.verify_attempts = 5
        self.verify_interval_s = 3.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        for n in range(self.settings.workers):
            t = threading.Thread(target=self._loop, name=f"worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 30) -> None:
        """Stop taking work, cancel runs in flight, wait for the workers."""
        self._stop.set()
        self._cancel.set()
        self.wake()
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        """New work is in the store (intake or an approval): stop waiting."""
        with self._wake:
            self._wake.notify_all()

    def recover(self) -> None:
        """After a restart: requeue what had not run yet; mark what a restart cut off, never run it blindly.

        A real run that was cut off may have changed the host: the incident is worked again from the
        start (diagnose, plan, policy, check mode) and a person decides before it runs again. A cut-off
        verify is simply verified again."""
        with self.store.write() as session:
            for inc in session.execute(select(Incident).where(Incident.state.in_([s.value for s in HELD_STATES]))).scalars():
                if IncidentState(inc.state) in _REQUEUE_ON_START:
                    self.lifecycle.move(session, inc, IncidentState.RECEIVED, "remediator restarted before the real run; worked again",
                                         event="incident.requeued")
                    continue
                step = "apply" if inc.state == IncidentState.EXECUTING else "verify"
                cut = session.execute(select(Run).where(Run.incident_id == inc.id, Run.status == "running")).scalars().all()
                for run in cut:
                    run.status, run.finished_at = "interrupted", utcnow()
                inc.interrupted = step
                reason = (f"remediator restarted during the real run of {inc.entry} on {inc.host}, which may have changed "
                          f"it: diagnosed and checked again, and a person decides before it runs again" if step == "apply"
                          else f"remediator restarted while verifying {inc.entry} on {inc.host}: verifying again")
                self.lifecycle.move(session, inc, IncidentState.RECEIVED, reason, event="incident.interrupted",
                                     data={"step": step, "runs": [r.ident for r in cut]})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                incident_id = self.claim()
            except StoreUnavailable as exc:
                log.warning("cannot claim work: %s", exc.message)
                incident_id = None
            if incident_id is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            self.work(incident_id)

    # ---- claiming --------------------------------------------------------------------------

    def claim(self) -> str | None:
        """Take the most urgent incident whose host is free; None when there is nothing to do."""
        with self.store.read() as session:   # most wake-ups find nothing: don't queue for the write lock then
            if session.execute(select(Incident.id).where(Incident.state.in_(_CLAIMABLE)).limit(1)).first() is None:
                return None
        with self.store.write() as session:
            held = {h for (h,) in session.execute(select(Incident.host).where(
                Incident.state.in_([s.value for s in HELD_STATES]), Incident.host.is_not(None))).all()}
            approved_hosts = {h for (h,) in session.execute(select(Incident.host).where(
                Incident.state == IncidentState.APPROVED)).all()}
            queue = session.execute(select(Incident).where(Incident.state.in_(_CLAIMABLE))
                .order_by(Incident.priority, Incident.created_at).limit(200)).scalars()
            for inc in queue:
                if inc.host in held:
                    continue
                if inc.state == IncidentState.RECEIVED and inc.host in approved_hosts:
                    continue   # an approved run on this host goes first
                nxt = IncidentState.DIAGNOSING if inc.state == IncidentState.RECEIVED else IncidentState.CHECKING
                inc.claimed_at = utcnow()
                inc.attempts += 1
                self.lifecycle.move(session, inc, nxt, event="incident.claimed", data={"state": nxt.value})
                return inc.id
        return None

    # ---- the steps -------------------------------------------------------------------------

    def work(self, incident_id: str) -> None:
        """Run one claimed incident as far as it goes now; never raises."""
        try:
            with self.store.read() as session:
                inc = session.get(Incident, incident_id)
            if inc is None:
                return
            if inc.state == IncidentState.DIAGNOSING:
                self._from_received(inc)
            elif inc.state == IncidentState.CHECKING:
                self._after_approval(inc)
        except _ShuttingDown:     # a run was cancelled by a stop: the incident stays where it is, for recover()
            log.info("incident %s: left for the next start (shutting down)", incident_id)
        except Exception as exc:   # a bug or an outage must not leave the incident (and its host) held
            log.exception("incident %s: internal error", incident_id)
            try:
                with self.store.write() as session:
                    inc = session.get(Incident, incident_id)
                    if inc is not None and IncidentState(inc.state) in HELD_STATES:
                        self.lifecycle.close(session, inc, IncidentState.ESCALATED,
                                    f"remediator hit an internal error ({type(exc).__name__}: {exc}); a person must look")
            except Exception:
                log.exception("incident %s: could not record the error", incident_id)

    def _from_received(self, inc: Incident) -> None:
        if inc.host is None:
            return self._close(inc.id, IncidentState.ESCALATED, f"no target host: {inc.reason}")
        if inc.interrupted == "verify" and inc.proposal:
            proposal = ActionProposal.model_validate(inc.proposal)
            self._move(inc.id, IncidentState.VERIFYING, "verifying again after a restart")
            return self._verify(inc.id, proposal, f"{proposal.entry} ran before the restart.")
        evidence = Evidence(self.executor, self.catalog, inc.host, f"{inc.id}-a{inc.attempts}",
                            self.settings.diagnostic_timeout_s, self._cancel,
                            on_run=lambda o: self._record_diagnostic(inc.id, inc.host, o))
        situation = Situation(alertname=inc.alertname, labels=inc.labels, annotations=inc.annotations, host=inc.host,
                              severity=inc.severity, ref=inc.id, generator_url=inc.generator_url or "",
                              interrupted=inc.interrupted)
        decided = decide(situation, catalog=self.catalog, planner=self.planner, policy=self.policy,
                         history=self.history, clock=self.clock, evidence=evidence)
        if decided.transcript is not None:
            self._record_transcript(inc.id, decided.transcript)
        if decided.escalation is not None:
            return self._close(inc.id, IncidentState.ESCALATED, decided.escalation.reason,
                               data={"planner": decided.escalation.planner, "fallback": decided.escalation.fallback})
        assert decided.proposal is not None and decided.verdict is not None
        proposal, decision = decided.proposal, decided.verdict
        if decision.verdict == Verdict.DENY:   # the evidence is for the person it goes to; nothing else runs
            proposal = self._planned(inc.id, proposal, decision, gather(decided, self.catalog, self.prometheus))
            return self._close(inc.id, IncidentState.DENIED, "; ".join(decision.reasons), data={"rules": decision.rules})

        # The entry's diagnostics and the check run are both read-only: they run side by side, and
        # both are in before anything is asked of a person or run for real.
        with ThreadPoolExecutor(1, thread_name_prefix=f"diagnose-{inc.id}") as pool:
            gathering = pool.submit(gather, decided, self.catalog, self.prometheus)
            proposal = self._planned(inc.id, proposal, decision, {})
            preview_result = self._check(inc.id, proposal, check_no=1)
            found = gathering.result()
        proposal = self._with_evidence(inc.id, proposal, found)
        if preview_result is None:
            return
        if decision.verdict == Verdict.APPROVE:
            return self._await_approval(inc.id, decision, preview_result)
        self._execute(inc.id, proposal)

    def _planned(self, incident_id: str, proposal: ActionProposal, decision: PolicyDecision, found: dict[str, Any]
                 ) -> ActionProposal:
        """Record the plan and the verdict (and the evidence, when it is in already)."""
        if found:
            proposal = proposal.model_copy(update={"evidence": sorted(found)})
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            row.evidence = found
            row.entry = proposal.entry
            row.proposal = proposal.model_dump(mode="json")
            row.decision = decision.model_dump(mode="json")
            self.lifecycle.move(session, row, IncidentState.PLANNED, proposal.rationale,
                                 data={"proposal": row.proposal, "decision": row.decision})
        return proposal

    def _with_evidence(self, incident_id: str, proposal: ActionProposal, found: dict[str, Any]) -> ActionProposal:
        """The evidence gathered beside the check run, on the incident and its proposal."""
        proposal = proposal.model_copy(update={"evidence": sorted(found)})
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            row.evidence = found
            row.proposal = proposal.model_dump(mode="json")
            audit.append(session, "incident.evidence", {"keys": sorted(found)}, incident_id)
        return proposal

    def _record_diagnostic(self, incident_id: str, host: str, outcome: DiagnosticOutcome) -> None:
        if outcome.result:
            self._record_run(incident_id, outcome.result, "diagnose", outcome.params, [host])

    def _record_transcript(self, incident_id: str, transcript: Transcript) -> None:
        """The planner's conversation, with the incident and (whole) in the audit trail, for replay."""
        t = transcript.model_dump(mode="json")
        with self.store.write() as db:
            db.get(Incident, incident_id).transcript = t
            audit.append(db, "planner.transcript", t, incident_id)
        self.metrics.llm_tokens.labels("prompt").inc(transcript.prompt_tokens)
        self.metrics.llm_tokens.labels("completion").inc(transcript.completion_tokens)
        self.metrics.plans.labels(transcript.planner, transcript.outcome).inc()

    def _check(self, incident_id: str, proposal: ActionProposal, check_no: int) -> RunResult | None:
        """Check mode; the Preview is stored; policy reviews it. None when the incident stopped here."""
        entry = self.catalog.get(proposal.entry)
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            if row.state != IncidentState.CHECKING:
                self.lifecycle.move(session, row, IncidentState.CHECKING)
            attempt = row.attempts
        result = self.executor.run(entry, proposal.params, proposal.hosts, check=True,
                                   ident=f"{incident_id}-a{attempt}-check{check_no}",
                                   timeout_s=self.settings.run_timeout_s, cancel=self._cancel)
        self._record_run(incident_id, result, "check", proposal.params, proposal.hosts)
        self._unless_stopping(result)
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            row.preview = {**result.preview.model_dump(mode="json"), "digest": result.preview.digest}
            audit.append(session, "check.preview", {"summary": result.preview.summary, "ok": result.preview.ok,
                                                    "digest": result.preview.digest, "run": result.ident}, incident_id)
        if result.status != RunStatus.SUCCESSFUL and result.preview.ok:
            self._close(incident_id, IncidentState.DENIED, f"the dry run did not finish ({result.status}); nothing was run")
            return None
        stop = self.policy.review(proposal, result.preview)
        if stop is not None:
            self._close(incident_id, IncidentState.DENIED, "; ".join(stop.reasons), data={"rules": stop.rules})
            return None
        return result

    def _await_approval(self, incident_id: str, decision: PolicyDecision, check: RunResult,
                        supersedes: str | None = None, why: str = "") -> None:
        entry = self.catalog.get(check.entry)
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            approval = approvals.request(session, self.settings, row, check.preview, required=decision.approvers,
                                         risk=str(entry.meta.risk), rules=decision.rules, reasons=decision.reasons,
                                         supersedes=supersedes)
            self.lifecycle.move(session, row, IncidentState.AWAITING_APPROVAL, why or "; ".join(decision.reasons),
                                notice=NotifyEvent.AWAITING_APPROVAL, approval=approval,
                                data={"approval": approval.id, "digest": approval.preview_digest,
                                      "required": approval.required, "expires_at": approval.expires_at,
                                      "supersedes": supersedes})

    def _after_approval(self, inc: Incident) -> None:
        proposal = ActionProposal.model_validate(inc.proposal)
        with self.store.read() as session:
            approval = session.execute(select(Approval).where(Approval.incident_id == inc.id, Approval.state == "approved")
                                       .order_by(Approval.decided_at.desc()).limit(1)).scalar_one_or_none()
            requests = session.execute(select(Approval.id).where(Approval.incident_id == inc.id)).all()
        if approval is None:
            return self._close(inc.id, IncidentState.ESCALATED, "approved without an approval record; not running")
        result = self._check(inc.id, proposal, check_no=len(requests) + 1)
        if result is None:
            return
        if result.preview.digest != approval.preview_digest:
            changed = approvals.drift(approval.preview or {"hosts": []}, result.preview) or ["the dry run's digest differs"]
            why = (f"the dry run changed after {approval.decided_by} approved it ({'; '.join(changed[:5])}); "
                   f"nothing was run: approve the new dry run")
            if len(requests) >= self.max_drift_requests:
                return self._close(inc.id, IncidentState.ESCALATED, why.replace("approve the new dry run",
                                                                             "it keeps changing, a person must look"))
            decision = PolicyDecision.model_validate(inc.decision)
            return self._await_approval(inc.id, decision, result, supersedes=approval.id, why=why)
        self._execute(inc.id, proposal)

    def _execute(self, incident_id: str, proposal: ActionProposal) -> None:
        entry = self.catalog.get(proposal.entry)
        with self.store.write() as session:
            row = session.get(Incident, incident_id)
            # Right before the real run: is the alert still firing? (Acting on a resolved alert hurts.)
            if not incidents.still_firing(session, incident_id):
                row.firing = False
                self.lifecycle.close(session, row, IncidentState.RESOLVED,
                                     "the alert resolved before the real run; nothing was changed",
                                     notice=NotifyEvent.AUTO_RESOLVED)
                return
            self.lifecycle.move(session, row, IncidentState.EXECUTING)
            attempt = row.attempts
        ident = f"{incident_id}-a{attempt}-apply"
        # Recorded before it starts: after a crash, the store knows a real run may have touched the host.
        run_id = self._begin_run(incident_id, ident, entry.id, "apply", proposal.params, proposal.hosts)
        result = self.executor.run(entry, proposal.params, proposal.hosts, check=False, ident=ident,
                                   timeout_s=self.settings.run_timeout_s, cancel=self._cancel)
        self._record_run(incident_id, result, "apply", proposal.params, proposal.hosts, run_id=run_id)
        self._unless_stopping(result)
        if result.status != RunStatus.SUCCESSFUL or not result.preview.ok:
            return self._close(incident_id, IncidentState.FAILED,
                                f"the run {result.status}: {result.preview.summary}")
        self._move(incident_id, IncidentState.VERIFYING, result.preview.summary)
        self._verify(incident_id, proposal, result.preview.summary)

    def _verify(self, incident_id: str, proposal: ActionProposal, summary: str) -> None:
        """The entry's verify checks, then the alert's own PromQL: resolved, or escalated saying what is still wrong."""
        entry = self.catalog.get(proposal.entry)
        with self.store.read() as session:
            inc = session.get(Incident, incident_id)
        outcome = run_verify(self.executor, self.catalog, entry, proposal.params, proposal.hosts[0],
                             f"{incident_id}-a{inc.attempts}", self.settings.diagnostic_timeout_s,
                             attempts=self.verify_attempts, interval_s=self.verify_interval_s, cancel=self._cancel)
        for r in outcome.results:
            self._record_run(incident_id, r, "verify", {}, proposal.hosts)
        if self._stop.is_set() and not outcome.ok:
            raise _ShuttingDown()
        if not outcome.ok:
            return self._close(incident_id, IncidentState.ESCALATED, f"{summary} {outcome.detail}")
        detail = outcome.detail
        expr = alert_expression(inc.generator_url)
        if self.prometheus and expr:
            # The alert's own condition is the final word: the fix counts when Prometheus agrees.
            cleared, seen = self.prometheus.wait_until_clear(expr, inc.labels, self.settings.prometheus_verify_s)
            with self.store.write() as session:
                audit.append(session, "verify.prometheus", {"expr": expr, "cleared": cleared, "detail": seen}, incident_id)
            if not cleared:
                return self._close(incident_id, IncidentState.ESCALATED, f"{summary} {detail}; but Prometheus: {seen}")
            detail += f"; Prometheus: {seen}"
        self._close(incident_id, IncidentState.RESOLVED, f"{summary} {detail}", notice=NotifyEvent.FIXED)

    # ---- helpers ---------------------------------------------------------------------------

    def _unless_stopping(self, result: RunResult) -> None:
        """A run cancelled because remediator is stopping ends nothing: the next start recovers the incident."""
        if self._stop.is_set() and result.status == RunStatus.CANCELED:
            raise _ShuttingDown()

    def _begin_run(self, incident_id: str, ident: str, entry: str, mode: str, params: dict[str, Any], hosts: list[str]) -> int:
        with self.store.write() as session:
            run = Run(incident_id=incident_id, ident=ident, entry=entry, mode=mode, hosts=hosts, params=params,
                      status="running", rc=None, started_at=utcnow())
            session.add(run)
            audit.append(session, f"run.{mode}.started", {"ident": ident, "entry": entry, "hosts": hosts}, incident_id)
            session.flush()
            return run.id

    def _record_run(self, incident_id: str, result: RunResult, mode: str, params: dict[str, Any], hosts: list[str],
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

    def _move(self, incident_id: str, state: IncidentState, reason: str = "") -> None:
        with self.store.write() as session:
            self.lifecycle.move(session, session.get(Incident, incident_id), state, reason)

    def _close(self, incident_id: str, state: IncidentState, reason: str, *, notice: NotifyEvent | None = None,
               data: dict[str, Any] | None = None) -> None:
        with self.store.write() as session:
            inc = session.get(Incident, incident_id)
            if notice is None:
                self.lifecycle.close(session, inc, state, reason, data=data)
            else:
                self.lifecycle.close(session, inc, state, reason, notice=notice, data=data)
