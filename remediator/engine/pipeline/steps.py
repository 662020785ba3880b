"""The pipeline's steps, one method each: from a claimed incident to the verdict, the dry run, a person's
approval, the real run and the verify. Ansible runs happen between transactions, never inside one.

    from_received: decide (remediator/engine/decide/decision.py) -> denied | check -> await_approval | execute
    after_approval: check again -> the approved dry run? execute : ask again (drift)
    execute -> verify -> resolved | escalated
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta

from sqlalchemy import func, select

from remediator.engine.catalog.loader import Catalog
from remediator.engine.decide import blast
from remediator.engine.decide.decision import Clock, History, Situation, decide, gather, judge
from remediator.engine.decide.evidence import Evidence, run_verify, verify_reads
from remediator.engine.decide.planners import Planner, PlanningContext
from remediator.engine.decide.policy import Policy
from remediator.engine.decide.reports import Query
from remediator.engine.intake import incidents
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, RunResult, RunStatus, Verdict
from remediator.engine.model.states import ApprovalState, IncidentState, RunMode, RunState
from remediator.engine.outbound.notify import NotifyEvent
from remediator.engine.outbound.prometheus import Prometheus
from remediator.engine.people import approvals
from remediator.engine.pipeline.records import Records
from remediator.engine.run.runner import Executor
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import Approval, Incident, Run, incident_row, utcnow

__all__ = ["Steps", "ShuttingDown"]


class ShuttingDown(Exception):
    """A run was cancelled because remediator is stopping: the incident stays where it is, for recover()."""


class Steps:
    """Everything a step needs, and the steps."""

    def __init__(self, *, settings: Settings, store: Store, catalog: Catalog, planner: Planner, policy: Policy,
                 executor: Executor, records: Records, lifecycle: Lifecycle, history: History, clock: Clock,
                 prometheus: Prometheus | None, query: Query | None, cancel: threading.Event, stopping: threading.Event):
        self.settings, self.store, self.catalog, self.planner, self.policy = settings, store, catalog, planner, policy
        self.limits = settings.section(blast.Limits)
        self.executor, self.records, self.lifecycle, self.history, self.clock = executor, records, lifecycle, history, clock
        self.prometheus, self.query = prometheus, query
        self.cancel = cancel          # handed to every ansible-runner run: set on shutdown
        self.stopping = stopping

    def from_received(self, inc: Incident) -> None:
        if inc.host is None:
            return self.records.close(inc.id, IncidentState.ESCALATED, f"no target host: {inc.reason}")
        host = inc.host
        if inc.interrupted == RunMode.APPLY:
            self.end_cut_runs(inc.id)
        if inc.interrupted == RunMode.VERIFY and inc.proposal:
            proposal = inc.proposal
            self.records.move(inc.id, IncidentState.VERIFYING, "verifying again after a restart")
            return self.verify(inc.id, proposal, f"{proposal.entry} ran before the restart.")
        evidence = Evidence(self.executor, self.catalog, host, f"{inc.id}-a{inc.attempts}",
                            self.settings.diagnostic_timeout_s, self.cancel,
                            on_run=lambda o: self.records.diagnostic(inc.id, host, o), inventory=self.policy.inventory)
        situation = _situation(inc)
        decided = decide(situation, catalog=self.catalog, planner=self.planner, policy=self.policy,
                         history=self.history, clock=self.clock, evidence=evidence, query=self.query)
        if decided.transcript is not None:
            self.records.transcript(inc.id, decided.transcript)
        if decided.report is not None:
            self.records.report(inc.id, decided.report)
        if decided.escalation is not None:
            if evidence.outcomes or evidence.metrics:     # what the runbook's gate (or the model) read is the person's starting point
                self.records.evidence(inc.id, evidence.as_dict())
            return self.records.close(inc.id, IncidentState.ESCALATED, decided.escalation.reason,
                               data={"planner": decided.escalation.planner, "fallback": decided.escalation.fallback})
        assert decided.proposal is not None and decided.verdict is not None
        proposal, decision = decided.proposal, decided.verdict
        if decision.verdict == Verdict.DENY:   # the evidence is for the person it goes to; nothing else runs
            proposal = self.records.planned(inc.id, proposal, decision, gather(decided, self.catalog, self.prometheus))
            return self.records.close(inc.id, IncidentState.DENIED, "; ".join(decision.reasons), data={"rules": decision.rules})

        # The entry's diagnostics and the check run are both read-only: they run side by side, and
        # both are in before anything is asked of a person or run for real.
        with ThreadPoolExecutor(1, thread_name_prefix=f"diagnose-{inc.id}") as pool:
            gathering = pool.submit(gather, decided, self.catalog, self.prometheus)
            proposal = self.records.planned(inc.id, proposal, decision, {})
            preview_result = self.check(inc.id, proposal, check_no=1)
            found = gathering.result()
        proposal = self.records.with_evidence(inc.id, proposal, found)
        if preview_result is None:
            return
        if decision.verdict == Verdict.APPROVE:
            return self.await_approval(inc.id, decision, preview_result.preview)
        self.execute(inc.id, proposal)

    def end_cut_runs(self, incident_id: str) -> None:
        """A real run a restart cut off may still be working on its hosts (its ansible-playbook died with
        remediator, not what it had started there): end it there before the incident is worked again."""
        with self.store.read() as session:
            cut = session.execute(select(Run).where(Run.incident_id == incident_id, Run.mode == RunMode.APPLY,
                                                    Run.status == RunState.INTERRUPTED)).scalars().all()
            cut_runs = [(r.ident, list(r.hosts)) for r in cut]
        for ident, hosts in cut_runs:
            said = self.executor.stop_on_hosts(hosts, ident)
            with self.store.write() as session:
                audit.append(session, "run.apply.ended_on_hosts", {"ident": ident, "hosts": hosts, "said": said},
                             incident_id)

    def check(self, incident_id: str, proposal: ActionProposal, check_no: int) -> RunResult | None:
        """Check mode; the Preview is stored; policy reviews it. None when the incident stopped here."""
        entry = self.catalog.get(proposal.entry)
        inventory = self.policy.inventory
        inventory.refresh()   # the run reads the file as it is now: so does the digest, below
        sha = inventory.sha
        with self.store.write() as session:
            row = incident_row(session, incident_id)
            if row.state != IncidentState.CHECKING:
                self.lifecycle.move(session, row, IncidentState.CHECKING)
            attempt = row.attempts
        result = self.executor.run(entry, proposal.params, proposal.hosts, check=True,
                                   ident=f"{incident_id}-a{attempt}-check{check_no}",
                                   timeout_s=self.settings.run_timeout_s, cancel=self.cancel)
        # What a person approves is also what it was run with and on: the digest covers these too.
        facts = {h: {"groups": inventory.hosts.get(h, []), **inventory.host_vars.get(h, {})} for h in proposal.hosts}
        result = result.model_copy(update={"preview": result.preview.model_copy(
            update={"params": proposal.params, "facts": facts, "inventory": sha})})
        self.records.run(incident_id, result, RunMode.CHECK, proposal.params, proposal.hosts)
        self.unless_stopping(result)
        with self.store.write() as session:
            row = incident_row(session, incident_id)
            row.preview = result.preview
            audit.append(session, "check.preview", {"summary": result.preview.summary, "ok": result.preview.ok,
                                                    "digest": result.preview.digest, "run": result.ident}, incident_id)
        if result.status != RunStatus.SUCCESSFUL and result.preview.ok:
            self.records.close(incident_id, IncidentState.DENIED, f"the dry run did not finish ({result.status}); nothing was run")
            return None
        stop = self.policy.review(proposal, result.preview)
        if stop is not None:
            self.records.close(incident_id, IncidentState.DENIED, "; ".join(stop.reasons), data={"rules": stop.rules})
            return None
        return result

    def await_approval(self, incident_id: str, decision: PolicyDecision, preview: Preview,
                        supersedes: str | None = None, why: str = "") -> None:
        """Ask people to decide on this dry run."""
        entry = self.catalog.get(preview.entry)
        with self.store.write() as session:
            row = incident_row(session, incident_id)
            approval = approvals.request(session, self.settings, row, preview, required=decision.approvers,
                                         risk=str(entry.meta.risk), rules=decision.rules, reasons=decision.reasons,
                                         supersedes=supersedes)
            self.lifecycle.move(session, row, IncidentState.AWAITING_APPROVAL, why or "; ".join(decision.reasons),
                                notice=NotifyEvent.AWAITING_APPROVAL, approval=approval,
                                data={"approval": approval.id, "digest": approval.preview_digest,
                                      "required": approval.required, "expires_at": approval.expires_at,
                                      "supersedes": supersedes})

    def after_approval(self, inc: Incident) -> None:
        proposal, decision = inc.proposal, inc.decision
        assert proposal is not None and decision is not None, "approved before it was planned"
        with self.store.read() as session:
            approval = session.execute(select(Approval).where(Approval.incident_id == inc.id, Approval.state == ApprovalState.APPROVED)
                                       .order_by(Approval.decided_at.desc()).limit(1)).scalar_one_or_none()
            requests = session.execute(select(Approval.id).where(Approval.incident_id == inc.id)).all()
        if approval is None:
            return self.records.close(inc.id, IncidentState.ESCALATED, "approved without an approval record; not running")
        result = self.check(inc.id, proposal, check_no=len(requests) + 1)
        if result is None:
            return
        if result.preview.digest != approval.preview_digest:
            changed = approvals.drift(approval.preview, result.preview) or ["the dry run's digest differs"]
            why = (f"the dry run changed after {approval.decided_by} approved it ({'; '.join(changed[:5])}); "
                   f"nothing was run: approve the new dry run")
            if len(requests) >= self.settings.approval_drift_max:
                return self.records.close(inc.id, IncidentState.ESCALATED, why.replace("approve the new dry run",
                                                                             "it keeps changing, a person must look"))
            return self.await_approval(inc.id, decision, result.preview, supersedes=approval.id, why=why)
        self.execute(inc.id, proposal)

    def execute(self, incident_id: str, proposal: ActionProposal) -> None:
        entry = self.catalog.get(proposal.entry)
        if not self.still_allowed(incident_id, proposal) or not self.still_broken(incident_id, proposal):
            return
        with self.store.write() as session:
            audit.lock(session)   # real runs take turns across replicas: the caps and waves below read what they did
            row = incident_row(session, incident_id)
            # Right before the real run: is the alert still firing? (Acting on a resolved alert hurts.)
            if not incidents.still_firing(session, incident_id):
                row.firing = False
                self.lifecycle.close(session, row, IncidentState.RESOLVED,
                                     "the alert resolved before the real run; nothing was changed",
                                     notice=NotifyEvent.AUTO_RESOLVED)
                return
            if why := blast.hold(session, self.limits, self.policy.inventory, entry.id, proposal.hosts):
                row.not_before = utcnow() + timedelta(seconds=self.settings.hold_s)
                self.lifecycle.move(session, row, IncidentState.RECEIVED, f"held back: {why}; worked again after "
                                    f"{self.settings.hold_s} s", event="incident.held", data={"why": why})
                return
            self.lifecycle.move(session, row, IncidentState.EXECUTING)
            ident = f"{incident_id}-a{row.attempts}-apply"
            # Recorded before it starts, with the move: after a crash, the store knows a real run may have touched
            # the host, and an incident that is EXECUTING always has its run.
            run_id = self.records.begin_run(incident_id, ident, entry.id, RunMode.APPLY, proposal.params,
                                            proposal.hosts, session=session)
        # The verify's first reads follow the real run in its own ansible-playbook: one start-up fewer on the path.
        result = self.executor.run(entry, proposal.params, proposal.hosts, check=False, ident=ident,
                                   timeout_s=self.settings.run_timeout_s, cancel=self.cancel,
                                   then=verify_reads(self.catalog, entry, proposal.params))
        self.records.run(incident_id, result, RunMode.APPLY, proposal.params, proposal.hosts, run_id=run_id)
        self.unless_stopping(result)
        if result.status != RunStatus.SUCCESSFUL or not result.preview.ok:
            return self.records.close(incident_id, IncidentState.FAILED,
                                f"the run {result.status}: {result.preview.summary}")
        self.records.move(incident_id, IncidentState.VERIFYING, result.preview.summary)
        self.verify(incident_id, proposal, result.preview.summary, first=result.then)

    def verify(self, incident_id: str, proposal: ActionProposal, summary: str, first: list[RunResult] | None = None
               ) -> None:
        """The entry's verify checks, then the alert's own PromQL: resolved, or escalated saying what is still wrong."""
        entry = self.catalog.get(proposal.entry)
        with self.store.read() as session:
            inc = incident_row(session, incident_id)
        outcome = run_verify(self.executor, self.catalog, entry, proposal.params, proposal.hosts[0],
                             f"{incident_id}-a{inc.attempts}", self.settings.diagnostic_timeout_s,
                             attempts=self.settings.verify_attempts,
                             interval_s=self.settings.verify_interval_s, cancel=self.cancel, first=first or ())
        for r in outcome.results:
            self.records.run(incident_id, r, RunMode.VERIFY, {}, proposal.hosts)
        if self.stopping.is_set() and not outcome.ok:
            raise ShuttingDown()
        if not outcome.ok:
            return self.records.close(incident_id, IncidentState.ESCALATED, f"{summary} {outcome.detail}")
        detail = outcome.detail
        expr = self.prometheus.expression_for(inc.generator_url or "", inc.alertname, inc.labels) if self.prometheus else None
        if self.prometheus and expr:
            # The alert's own condition is the final word: the fix counts when Prometheus agrees.
            cleared, seen = self.prometheus.wait_until_clear(expr, inc.labels, self.settings.prometheus_verify_s)
            with self.store.write() as session:
                audit.append(session, "verify.prometheus", {"expr": expr, "cleared": cleared, "detail": seen}, incident_id)
            if not cleared:
                return self.records.close(incident_id, IncidentState.ESCALATED, f"{summary} {detail}; but Prometheus: {seen}")
            detail += f"; Prometheus: {seen}"
        self.records.close(incident_id, IncidentState.RESOLVED, f"{summary} {detail}", notice=NotifyEvent.FIXED)

    # ---- helpers ---------------------------------------------------------------------------

    def still_broken(self, incident_id: str, proposal: ActionProposal) -> bool:
        """The runbook's evidence read again, unless planning read it moments ago (`gate_fresh_s`): a target that
        is healthy now is not changed, and the incident says why. True: run it."""
        with self.store.read() as session:
            inc = incident_row(session, incident_id)
            host, ctx = inc.host, _planning_context(inc)
            read_at = session.execute(select(func.max(Run.finished_at)).where(
                Run.incident_id == incident_id, Run.mode == RunMode.DIAGNOSE)).scalar()
        if read_at is not None and (utcnow() - read_at).total_seconds() < self.settings.gate_fresh_s:
            return True
        assert host is not None
        fresh = Evidence(self.executor, self.catalog, host, f"{incident_id}-a{inc.attempts}-again",
                         self.settings.diagnostic_timeout_s, self.cancel,
                         on_run=lambda o: self.records.diagnostic(incident_id, host, o), inventory=self.policy.inventory)
        why = self.planner.gate_again(ctx, proposal, fresh.diagnose)
        if why is None:
            return True
        self.records.close(incident_id, IncidentState.ESCALATED,
                           f"read again right before the real run: {why}; nothing was run")
        return False

    def still_allowed(self, incident_id: str, proposal: ActionProposal) -> bool:
        """Policy once more, right before the real run (rates, breaker, time may have moved since it was decided
        or approved): deny closes the incident; a person's approval now needed, when none was given, asks for one
        on the dry run already shown. True: run it."""
        self.policy.inventory.refresh()   # judged by the inventory the real run will read
        with self.store.write() as session:
            audit.lock(session)   # as at the claim: brakes are read and opened in turns across replicas
            inc = incident_row(session, incident_id)
            # The alert's storm brake again, now that incidents elsewhere had time to show their fault (the claim
            # counted only those already planned): a storm across regions waits for a person before any real run.
            self.records.braked(session, self.settings, inc, blast.brake(session, self.limits, self.policy.inventory, inc))
            preview = inc.preview
            # a person approved exactly this dry run (after_approval has just checked it did not drift)
            approved = preview is not None and session.execute(select(Approval.id).where(
                Approval.incident_id == incident_id, Approval.state == ApprovalState.APPROVED,
                Approval.preview_digest == preview.digest).limit(1)).first() is not None
            situation = _situation(inc)
        verdict, _ = judge(situation, proposal, catalog=self.catalog, policy=self.policy, history=self.history,
                           clock=self.clock)
        if verdict.verdict == Verdict.ALLOW:
            with self.store.read() as session:
                why = blast.unverified_elsewhere(session, self.limits, self.policy.inventory, proposal.entry, proposal.hosts)
            if why:
                verdict = PolicyDecision(verdict=Verdict.APPROVE, rules=[*verdict.rules, "wave"], reasons=[why])
        if verdict.verdict == Verdict.DENY:
            self.records.close(incident_id, IncidentState.DENIED, "asked again right before the real run, policy "
                               f"denies: {'; '.join(verdict.reasons)}", data={"rules": verdict.rules})
            return False
        if verdict.verdict == Verdict.APPROVE and not approved and preview is not None:
            self.await_approval(incident_id, verdict, preview, why="asked again right before the real run, policy "
                                f"wants a person: {'; '.join(verdict.reasons)}")
            return False
        return True

    def unless_stopping(self, result: RunResult) -> None:
        """A run cancelled because remediator is stopping ends nothing: the next start recovers the incident."""
        if self.stopping.is_set() and result.status == RunStatus.CANCELED:
            raise ShuttingDown()


def _situation(inc: Incident) -> Situation:
    assert inc.host is not None
    return Situation(alertname=inc.alertname, labels=inc.labels, annotations=inc.annotations, host=inc.host,
                     severity=inc.severity, ref=inc.id, generator_url=inc.generator_url or "", interrupted=inc.interrupted,
                     began=inc.created_at.replace(tzinfo=UTC))   # when the alert reached remediator: group_wait after it began


def _planning_context(inc: Incident) -> PlanningContext:
    assert inc.host is not None
    return PlanningContext(alertname=inc.alertname, labels=inc.labels, annotations=inc.annotations, host=inc.host,
                           severity=inc.severity, ref=inc.id)
