"""The running engine: the parts loaded once (parts.py), its background threads, and what the API and the CLI call.

The API and the CLI hold one `Engine` and call its methods; nothing here knows about HTTP. The housekeeper's chores
are housekeeper.py's table; a truncated group's refetch is intake/refetch.py.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text

from remediator.engine.decide import closing
from remediator.engine.decide.decision import decide, situation_of
from remediator.engine.decide.evidence import Evidence
from remediator.engine.errors import ConfigError, PayloadError, StoreUnavailable
from remediator.engine.housekeeper import Chore, Housekeeper
from remediator.engine.intake import inbox
from remediator.engine.intake.group_commit import GroupCommit
from remediator.engine.intake.ingester import Batch, Ingester
from remediator.engine.intake.pacing import Pacer
from remediator.engine.intake.refetch import Refetch
from remediator.engine.intake.targets import host_from_labels
from remediator.engine.model.alerts import Alert, AlertmanagerPayload
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Report, Transcript, Verdict
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.notify import Notifier
from remediator.engine.parts import Parts
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identities, Identity, Role
from remediator.engine.pipeline.worker import Pipeline
from remediator.engine.settings import Settings
from remediator.engine.store import anchor, audit, checkpoint, leases, retention
from remediator.engine.store.leader import HOUSEKEEPER, Leadership

__all__ = ["Engine", "WhatIf", "Acknowledged"]


class Acknowledged(BaseModel):
    """A webhook stored durably; GET /deliveries/{delivery} shows what it became."""

    delivery: int
    alerts: int


class WhatIf(BaseModel):
    """What the pipeline WOULD do with one alert: target, proposal, verdict, dry run. Nothing is run for real."""

    alertname: str
    host: str | None
    target: str
    proposal: ActionProposal | None = None
    escalation: str | None = None
    decision: PolicyDecision | None = None
    review: PolicyDecision | None = None
    preview: Preview | None = None
    transcript: Transcript | None = None
    report: Report | None = None

log = logging.getLogger(__name__)
_PARSE_ON_LOOP_BYTES = 64 * 1024   # bigger bodies are validated on a thread: the loop keeps answering meanwhile


def _as_gauge(alive: Callable[[], bool]) -> Callable[[], float]:
    return lambda: 1.0 if alive() else 0.0


class Engine:
    """Runs what `parts` (remediator/engine/parts.py) loaded: the pipeline workers, the ingester and the housekeeper,
    as the role says; the API and the CLI call its methods. Nothing is loaded here."""

    def __init__(self, parts: Parts):
        settings = parts.settings
        self.parts = parts
        self.settings = settings
        self.clock = parts.clock
        self.store, self.inbox = parts.store, parts.inbox
        self.catalog, self.inventory, self.planner, self.policy = parts.catalog, parts.inventory, parts.planner, parts.policy
        self.executor = parts.executor
        self.works = settings.role in ("all", "worker")
        self.takes_in = settings.role in ("all", "api")
        self.metrics = Metrics(self.store)
        self.lifecycle = closing.lifecycle(settings, self.inventory, self.metrics)
        self.pipeline = Pipeline(settings=settings, store=self.store, catalog=self.catalog, inventory=self.inventory,
                                 planner=self.planner, policy=self.policy, executor=self.executor, metrics=self.metrics,
                                 lifecycle=self.lifecycle, clock=parts.clock, query=parts.query)
        self.notifier = Notifier(self.store, settings,
                                 on_sent=lambda channel: self.metrics.notifications.labels(channel).inc())
        self._acknowledge = GroupCommit(self.inbox.store, self.inbox.write)
        self.ingester = Ingester(settings, self.inbox, self.inventory, on_ingested=self._ingested,
                                 on_room=lambda: self.pacer.progress())
        self.pacer = Pacer(self.ingester, settings.intake_lag_max_s, settings.intake_hold_s,
                           floor_alerts=settings.intake_batch_alerts // 10)
        self.refetch_truncated = Refetch(settings, self.store, self.inbox.store, self._store,
                                         lambda delivery, timeout_s: self.ingester.wait_taken_in(delivery, timeout_s=timeout_s),
                                         self.pipeline.wake)
        self.metrics.intake_backlog.set_function(lambda: self.ingester.backlog)
        self.metrics.intake_behind.set_function(self.ingester.behind_s)
        self.metrics.intake_held.set_function(lambda: self.pacer.held)
        self.metrics.intake_stuck.set_function(lambda: 1 if self.ingester.stuck else 0)
        self.identities = Identities(self.store, [t.get_secret_value() for t in settings.tokens])
        self.leader = Leadership(self.store, HOUSEKEEPER)   # the housekeeper's jobs run on one replica at a time
        self.housekeeper = Housekeeper(self._chores(), leads=self._leads)
        parts_alive: dict[str, Callable[[], bool]] = {
            "workers": self.pipeline.alive, "ingester": self.ingester.alive, "housekeeper": self.housekeeper.alive}
        for part, alive in parts_alive.items():
            if (part != "workers" or self.works) and (part != "ingester" or self.takes_in):
                self.metrics.up.labels(part).set_function(_as_gauge(alive))

    @classmethod
    def load(cls, settings: Settings, **parts: Any) -> Engine:
        """An engine over everything the settings name (`parts`: any of Parts.load's, handed in instead)."""
        return cls(Parts.load(settings, **parts))

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pipeline workers and the ingester (as the role says) and the housekeeper."""
        if self.works and not self.store.is_sqlite:
            skew, most = leases.clock_skew_s(self.store), self.settings.lease_ttl_s / 3
            if skew > most:   # its leases and the others' would be judged on clocks that disagree
                raise ConfigError(f"this machine's clock is {skew:.1f} s off the database's (at most {most:g} s, a third "
                                  "of lease_ttl_s): set its time right (NTP: `chronyc tracking`, `timedatectl`), then start")
        if self.store.anchored and (missing := anchor.syslog_missing(self.settings.audit_anchor_syslog,
                                                                    self.settings.audit_anchor_file)):
            log.warning(missing)   # asked for, not there: said, never dropped without a word
        if not self.store.anchored:
            log.warning("no audit anchor is active (audit_anchor_syslog without /dev/log, no audit_anchor_file): a tail "
                        "of the audit chain cut off with its head row would go unnoticed; set audit_anchor_file")
        if self.works:
            self.pipeline.start()
        if self.takes_in:
            self.ingester.start()
        self.housekeeper.start()

    def stop(self) -> None:
        self.housekeeper.stop()
        self.ingester.stop()
        self.refetch_truncated.close()
        self.pipeline.stop()
        self.executor.close()
        if self.leader.held():
            self.notifier.deliver_due()   # a last pass: what can go out now goes out
        self.leader.release()

    def _leads(self) -> bool:
        leads = self.leader.held()
        self.metrics.leader.set(1 if leads else 0)
        return leads

    def _chores(self) -> list[Chore]:
        """This replica's own chores, then (on the one replica holding the lock) the singletons: taking over what a
        dead replica left, the audit check, approval expiry, the outbox and retention."""
        s, postgres = self.settings, not self.store.is_sqlite
        return [
            Chore("ingester", self.ingester.start, every_s=10, leader_only=False,   # it ended (a bug, an outage at its
                  when=lambda: self.takes_in and not self.ingester.alive()),        # start): again
            Chore("settle intake", self.ingester.settle, leader_only=False, when=lambda: postgres),
            Chore("inventory", self.inventory.refresh, every_s=5, leader_only=False),   # edited: read again
            Chore("take over", self._take_over, every_s=s.lease_ttl_s / 4, when=lambda: postgres),
            Chore("verify audit", self._verify_audit, every_s=s.audit_verify_interval_s, first_after_s=5,
                  when=lambda: bool(s.audit_verify_interval_s)),
            Chore("expire approvals", lambda: approvals.expire_due(self.store, self.lifecycle)),
            Chore("notify", self._deliver),
            Chore("prune", self._prune, every_s=86_400, first_after_s=60),   # a minute after the start, then daily
        ]

    def _take_over(self) -> None:
        if self.pipeline.take_over():
            self.pipeline.wake()

    def _deliver(self) -> None:
        sent = self.notifier.deliver_due()
        if sent:
            log.info("delivered %d notifications", sent)

    def _prune(self) -> None:
        """The daily prune: bulk after retention_days, records after retention_incidents_days (0: keep)."""
        s = self.settings
        if s.retention_days:
            report = retention.prune(self.store, timedelta(days=s.retention_days))
            log.info("pruned what is older than %d days: %s", s.retention_days, report)
        if s.retention_incidents_days:
            try:
                key = checkpoint.cutting_key(s)
            except ConfigError as exc:
                log.warning("closed incidents are kept: %s", exc.message)
                return
            report = retention.prune(self.store, timedelta(days=s.retention_incidents_days), incidents=True, key=key)
            log.info("pruned records older than %d days: %s", s.retention_incidents_days, report)
            if report.audit_unshipped:
                log.warning("%d audit events old enough to prune stay: ship them with `remediator audit export`",
                            report.audit_unshipped)

    def _verify_audit(self) -> None:
        """The chain checked as `remediator audit verify` does, for the metrics (an alert rule watches them)."""
        kept = self.settings.audit_anchor_file   # and against every head exported there, when it is configured
        report = audit.verify(self.store, anchor.parse_heads(kept.read_text()) if kept and kept.is_file() else [],
                              checkpoint.signing_key(self.settings))
        self.metrics.audit_broken.set(0 if report.ok else 1)
        self.metrics.audit_verified.set(time.time())
        if not report.ok:
            log.error("the audit chain is broken: %s", "; ".join(report.problems[:5]))

    def healthy(self) -> tuple[bool, dict[str, str]]:
        """Is the store reachable and are the workers alive?"""
        checks = {}
        try:
            with self.store.read() as session:
                session.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"unavailable: {exc}"
        if self.works:
            checks["workers"] = ("ok" if self.pipeline.alive() else
                                 f"fenced: {self.pipeline.fenced}" if self.pipeline.fenced else "not running")
        if self.takes_in:
            checks["ingester"] = ("not running" if not self.ingester.alive() else f"{self.ingester.backlog} alerts "
                                  f"waiting: {self.ingester.stuck}" if self.ingester.stuck else "ok")
        checks["housekeeper"] = "ok" if self.housekeeper.alive() else "not running"
        return all(v == "ok" for v in checks.values()), checks

    # ---- what the API calls ----------------------------------------------------------------

    async def acknowledge_async(self, body: bytes, sender: str, gone: Callable[[], Awaitable[bool]] | None = None
                                ) -> Acknowledged:
        """The webhook: validate, store durably (group commit), hand to the ingester; then the caller answers 2xx.
        Small bodies are validated on the event loop, and no thread waits for the commit (a thread per request cost
        the webhook more than the store did).

        Under a storm the answer is held until the ingester has room, at most `intake_hold_s`
        (remediator/engine/intake/pacing.py). PayloadError (4xx) for a body that is wrong; StoreUnavailable (503,
        Alertmanager retries) when the store cannot take it, the ingester is more than `intake_backlog_max` alerts
        behind, or `gone()` says the sender stopped waiting for the held answer."""
        if not self.takes_in:   # a 5xx: Alertmanager keeps it and retries (a 4xx would drop it)
            raise StoreUnavailable("this replica's role is worker: it takes no webhooks; point Alertmanager at a "
                                   "replica of role api or all")
        if len(body) > _PARSE_ON_LOOP_BYTES:
            payload = await asyncio.to_thread(inbox.parse_payload, body)
        else:
            payload = inbox.parse_payload(body)
        self._admit(payload)
        if not self.ingester.alive():
            await asyncio.to_thread(self.ingester.start)
        alerts = len(payload.alerts)
        await self.pacer.admit(alerts, gone)
        try:
            # Again: the backlog may have grown while the answer was held, and other webhooks' admitted alerts are
            # not stored yet (a burst of concurrent webhooks would each pass the first look)
            self._admit(payload, pending=self.pacer.admitting - alerts)
            delivery_id = await asyncio.wrap_future(self._acknowledge.hand_over(inbox.Received(payload, sender)))
            self.ingester.acknowledged(delivery_id, alerts)
        finally:
            self.pacer.done(alerts)
        return Acknowledged(delivery=delivery_id, alerts=alerts)

    def _admit(self, payload: AlertmanagerPayload, pending: int = 0) -> AlertmanagerPayload:
        """StoreUnavailable when the backlog (and `pending` alerts on their way into it) leaves no room for these; a
        delivery bigger than intake_backlog_max is taken when nothing waits."""
        waiting = self.ingester.backlog + pending
        if waiting + len(payload.alerts) > self.settings.intake_backlog_max and waiting:
            raise StoreUnavailable(f"{waiting} alerts are waiting to be taken in (intake_backlog_max "
                                   f"{self.settings.intake_backlog_max}); send again shortly")
        return payload

    def _store(self, payload: AlertmanagerPayload, sender: str) -> int:
        """Into the inbox (group commit), and the ingester told; the delivery's id."""
        self.ingester.start()   # no-op when running (the API without a started engine still takes alerts in)
        delivery_id = self._acknowledge.submit(inbox.Received(payload, sender))
        self.ingester.acknowledged(delivery_id, len(payload.alerts))
        return delivery_id

    def _ingested(self, batch: Batch) -> None:
        """After deliveries were taken in: metrics, wake the workers, fetch what truncated groups left out."""
        wake = False
        for state, seconds_open in batch.closed:
            self.metrics.count_close(state, seconds_open)
        for result in batch.results:
            self.metrics.alerts.labels("new").inc(result.new_alerts)
            self.metrics.alerts.labels("duplicate").inc(result.duplicates)
            wake = wake or bool(result.new_alerts and set(result.incidents) - set(result.escalated))
            if result.truncated and self.settings.alertmanager_url:
                payload = inbox.stored_payload(self.store, result.delivery_id)
                self.refetch_truncated.submit(payload, result)
        if wake:
            self.pipeline.wake()

    def vote(self, who: Identity, *, approve: bool, approval_id: str | None = None, incident_id: str | None = None,
             comment: str = "", digest: str | None = None) -> str:
        """A person's decision on a pending approval (by its id, or the incident's); wakes the workers."""
        who.require(Role.APPROVER, "approve or reject")
        if approve and not digest:   # the page and the API always show it: approving blind is refused
            raise PayloadError("approving needs the digest of the dry run you read (`digest`, shown by GET "
                               "/approvals/{id}); it binds your approval to exactly that dry run")
        if approval_id is not None:
            state = approvals.vote(self.store, self.lifecycle, approval_id, who, approve=approve, comment=comment, digest=digest)
        else:
            assert incident_id is not None
            state = approvals.vote_on_incident(self.store, self.lifecycle, incident_id, who, approve=approve,
                                               comment=comment, digest=digest)
        self.pipeline.wake()
        return state

    def what_if(self, alert: Alert, *, check: bool = True) -> WhatIf:
        """Target, plan, policy and (unless denied) a check-mode run for one alert; no real run, no incident.

        The same decide() as the pipeline, with the store's history and this engine's clock."""
        self.inventory.refresh()
        host, how = host_from_labels(alert.labels, self.inventory, self.settings.target_labels)
        out = WhatIf(alertname=alert.alertname, host=host, target=how)
        if host is None:
            return out.model_copy(update={"escalation": f"no target host: {how}"})
        evidence = Evidence(self.executor, self.catalog, host, f"plan-{alert.fingerprint}", self.settings.diagnostic_timeout_s,
                            inventory=self.inventory)
        decided = decide(situation_of(alert, host), catalog=self.catalog, planner=self.planner, policy=self.policy,
                         history=self.pipeline.history, clock=self.clock, evidence=evidence if check else None,
                         query=self.pipeline.query if check else None)
        out = out.model_copy(update={"transcript": decided.transcript, "report": decided.report})
        if decided.escalation is not None:
            return out.model_copy(update={"escalation": decided.escalation.reason})
        assert decided.proposal is not None and decided.verdict is not None
        proposal = decided.proposal
        out = out.model_copy(update={"proposal": proposal, "decision": decided.verdict})
        if decided.verdict.verdict == Verdict.DENY or not check:
            return out
        result = self.executor.run(self.catalog.get(proposal.entry), proposal.params, proposal.hosts, check=True,
                                   ident=f"plan-{alert.fingerprint}", timeout_s=self.settings.run_timeout_s)
        return out.model_copy(update={"preview": result.preview, "review": self.policy.review(proposal, result.preview)})
