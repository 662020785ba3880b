"""The running engine: everything loaded once from the settings, plus its background threads.

The API and the CLI hold one `Engine` and call its methods; nothing here knows about HTTP.
Configuration problems (catalog, inventory, policies, runbooks) fail at construction, naming the file.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import text

from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide.configured import make_planner
from remediator.engine.decide.decision import Clock, decide, situation_of, system_clock
from remediator.engine.decide.evidence import Evidence
from remediator.engine.decide.policy import load_policy
from remediator.engine.decide.reports import Query
from remediator.engine.errors import ConfigError, PayloadError, StoreUnavailable
from remediator.engine.intake import inbox
from remediator.engine.intake.alertmanager import AlertmanagerAPIError, fetch_group_alerts
from remediator.engine.intake.group_commit import GroupCommit
from remediator.engine.intake.ingester import Batch, Ingester
from remediator.engine.intake.targets import host_from_labels, load_inventory
from remediator.engine.model.alerts import Alert, AlertmanagerPayload
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Report, Transcript, Verdict
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.notify import Notifier
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identities, Identity, Role
from remediator.engine.pipeline.lifecycle import Lifecycle
from remediator.engine.pipeline.worker import Pipeline
from remediator.engine.run.runner import AnsibleExecutor, Executor
from remediator.engine.settings import Settings
from remediator.engine.store import anchor, audit, checkpoint, retention
from remediator.engine.store.db import open_store
from remediator.engine.store.leader import HOUSEKEEPER, Leadership
from remediator.engine.store.queries import get_delivery

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
REFETCH_SENDER = "remediator:refetch"   # what fetching a truncated group's other alerts records as their poster


def _as_gauge(alive: Callable[[], bool]) -> Callable[[], float]:
    return lambda: 1.0 if alive() else 0.0


class Engine:
    def __init__(self, settings: Settings, executor: Executor | None = None, clock: Clock = system_clock,
                 query: Query | None = None):
        """`executor`, `clock` and `query` (how Level 2 reports ask Prometheus) default to the real ones."""
        self.settings = settings
        self.clock = clock
        self.store = open_store(settings)
        if settings.role != "all" and self.store.is_sqlite:
            raise ConfigError(f"role {settings.role} needs the replicas to share a PostgreSQL store (database_url: "
                              "postgresql+psycopg://...); on SQLite one serve does everything (role all; docs/scaling.md)")
        self.works = settings.role in ("all", "worker")
        self.takes_in = settings.role in ("all", "api")
        self.store.prepare(settings.migrate_on_start)
        self.catalog = load_catalog(*settings.catalog_roots)
        self.inventory = load_inventory(settings.inventory)
        self.planner = make_planner(settings, self.catalog)
        self.policy = load_policy(settings.policies_dir, self.catalog, self.inventory)
        self.executor = executor or AnsibleExecutor(settings.data_dir / "runs", settings.inventory,
                                                   forks=settings.runner_forks)
        self.metrics = Metrics(self.store)
        self.lifecycle = Lifecycle(settings, self.metrics, self.inventory)
        self.pipeline = Pipeline(settings=settings, store=self.store, catalog=self.catalog, inventory=self.inventory,
                                 planner=self.planner, policy=self.policy, executor=self.executor, metrics=self.metrics,
                                 lifecycle=self.lifecycle, clock=clock, query=query)
        self.notifier = Notifier(self.store, settings,
                                 on_sent=lambda channel: self.metrics.notifications.labels(channel).inc())
        self.inbox = inbox.Inbox.open(settings, self.store)
        self._acknowledge = GroupCommit(self.inbox.store, self.inbox.write)
        self.ingester = Ingester(settings, self.inbox, self.inventory, on_ingested=self._ingested)
        self.metrics.intake_backlog.set_function(lambda: self.ingester.backlog)
        self.metrics.intake_stuck.set_function(lambda: 1 if self.ingester.stuck else 0)
        parts: dict[str, Callable[[], bool]] = {
            "workers": self.pipeline.alive, "ingester": self.ingester.alive,
            "housekeeper": lambda: bool(self._housekeeper and self._housekeeper.is_alive())}
        for part, alive in parts.items():
            if (part != "workers" or self.works) and (part != "ingester" or self.takes_in):
                self.metrics.up.labels(part).set_function(_as_gauge(alive))
        self.identities = Identities(self.store, [t.get_secret_value() for t in settings.tokens])
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self.leader = Leadership(self.store, HOUSEKEEPER)   # the housekeeper's jobs run on one replica at a time

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pipeline workers and the ingester (as the role says) and the housekeeper."""
        if self.works:
            self.pipeline.start()
        if self.takes_in:
            self.ingester.start()
        self._housekeeper = threading.Thread(target=self._housekeep, name="housekeeper", daemon=True)
        self._housekeeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.ingester.stop()
        self.pipeline.stop()
        if self._housekeeper:
            self._housekeeper.join(15)
        if self.leader.held():
            self.notifier.deliver_due()   # a last pass: what can go out now goes out
        self.leader.release()

    def _housekeep(self) -> None:
        """This replica's own chores, then (on the one replica holding the lock) the singletons: the audit check,
        approval expiry, the outbox, retention, and taking over what a dead replica left."""
        next_prune = time.monotonic() + 60   # the first a minute after start, then daily
        next_verify = time.monotonic() + 5
        next_takeover = next_ingester = 0.0
        while not self._stop.wait(0.5):
            try:
                if self.takes_in and not self.ingester.alive() and time.monotonic() >= next_ingester:
                    next_ingester = time.monotonic() + 10   # it ended (a bug, an outage at its start): again
                    self.ingester.start()
                if not self.store.is_sqlite:
                    self.ingester.settle()
                leads = self.leader.held()
                self.metrics.leader.set(1 if leads else 0)
                if not leads:
                    continue
                if not self.store.is_sqlite and time.monotonic() >= next_takeover:
                    next_takeover = time.monotonic() + self.settings.lease_ttl_s / 4
                    if self.pipeline.take_over():
                        self.pipeline.wake()
                if self.settings.audit_verify_interval_s and time.monotonic() >= next_verify:
                    next_verify = time.monotonic() + self.settings.audit_verify_interval_s
                    self._verify_audit()
                approvals.expire_due(self.store, self.lifecycle)
                sent = self.notifier.deliver_due()
                if sent:
                    log.info("delivered %d notifications", sent)
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + 86_400
                    self._prune()
            except StoreUnavailable as exc:
                log.warning("housekeeping skipped: %s", exc.message)
            except Exception:
                log.exception("housekeeping failed; trying again")

    def _prune(self) -> None:
        """The daily prune: bulk after retention_days, records after retention_incidents_days (0: keep)."""
        s = self.settings
        if s.retention_days:
            report = retention.prune(self.store, timedelta(days=s.retention_days))
            log.info("pruned what is older than %d days: %s", s.retention_days, report)
        if s.retention_incidents_days:
            report = retention.prune(self.store, timedelta(days=s.retention_incidents_days), incidents=True,
                                     key=checkpoint.signing_key(s))
            log.info("pruned records older than %d days: %s", s.retention_incidents_days, report)

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
        checks["housekeeper"] = "ok" if self._housekeeper and self._housekeeper.is_alive() else "not running"
        return all(v == "ok" for v in checks.values()), checks

    # ---- what the API calls ----------------------------------------------------------------

    async def acknowledge_async(self, body: bytes, sender: str) -> Acknowledged:
        """The webhook: validate, store durably (group commit), hand to the ingester; then the caller answers 2xx.
        Small bodies are validated on the event loop, and no thread waits for the commit (a thread per request cost
        the webhook more than the store did).

        PayloadError (4xx) for a body that is wrong; StoreUnavailable (503, Alertmanager retries) when
        the store cannot take it or the ingester is more than `intake_backlog_max` alerts behind."""
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
        delivery_id = await asyncio.wrap_future(self._acknowledge.hand_over(inbox.Received(payload, sender)))
        self.ingester.acknowledged(delivery_id, len(payload.alerts))
        return Acknowledged(delivery=delivery_id, alerts=len(payload.alerts))

    def _admit(self, payload: AlertmanagerPayload) -> AlertmanagerPayload:
        if self.ingester.backlog + len(payload.alerts) > self.settings.intake_backlog_max and self.ingester.backlog:
            raise StoreUnavailable(f"{self.ingester.backlog} alerts are waiting to be taken in (intake_backlog_max "
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
                threading.Thread(target=self.refetch_truncated, args=(payload, result), name="refetch", daemon=True).start()
        if wake:
            self.pipeline.wake()

    def refetch_truncated(self, payload: AlertmanagerPayload, result: inbox.IntakeResult) -> int:
        """Fetch a truncated group's missing alerts from the Alertmanager API and take them in; returns how many were new."""
        assert self.settings.alertmanager_url
        if payload.receiver != self.settings.alertmanager_receiver:
            inbox.note_refetch(self.store, result, f"not fetched: the delivery names receiver {payload.receiver!r}, not "
                                                   f"remediator's ({self.settings.alertmanager_receiver!r})")
            return 0
        try:   # the receiver is the configured one, never the body's: a sender cannot pull in other routes' alerts
            alerts = fetch_group_alerts(self.settings.alertmanager_url, dict(payload.groupLabels),
                                        self.settings.alertmanager_receiver, limit=self.settings.alertmanager_refetch_max)
        except AlertmanagerAPIError as exc:
            log.warning("truncated delivery %s: %s", result.delivery_id, exc)
            inbox.note_refetch(self.store, result, f"could not fetch the {payload.truncatedAlerts} alerts left out: {exc}")
            return 0
        if not alerts:
            inbox.note_refetch(self.store, result, "the Alertmanager API had no further active alerts for this group")
            return 0
        full = payload.model_copy(update={"alerts": alerts, "truncatedAlerts": 0})
        # Another delivery, the way every delivery comes in: stored, then taken in by the ingester.
        fetched = self._store(full, REFETCH_SENDER)
        if not self.ingester.wait_taken_in(fetched, timeout_s=60):
            inbox.note_refetch(self.store, result, f"fetched {len(alerts)} alerts from the Alertmanager API (delivery "
                                                    f"{fetched}); not yet taken in")
            return 0
        new = get_delivery(self.store, fetched, self.inbox.store).new or 0
        inbox.note_refetch(self.store, result, f"fetched {len(alerts)} alerts from the Alertmanager API, "
                                                f"{new} of them new (delivery {fetched})")
        self.pipeline.wake()
        return new

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
