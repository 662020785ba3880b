"""Prometheus metrics. Counters count events in this process; incidents by state, the outbox, open breakers and
waiting approvals are read from the store at scrape time, so they survive a restart and agree across processes.
packaging/prometheus/remediator-rules.yml alerts on them, packaging/grafana/remediator.json shows them (a test
keeps both to names serve exports)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from remediator.engine.model.states import IncidentState
from remediator.engine.store.db import Store
from remediator.engine.store.tables import Approval, BreakerRow, Incident, OutboxMessage, utcnow

__all__ = ["Metrics"]

_RUN_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class _StoreCollector:
    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        by_state = GaugeMetricFamily("remediator_incidents", "Incidents by state", labels=["state"])
        backlog = GaugeMetricFamily("remediator_outbox_pending", "Notifications not yet delivered", labels=["channel"])
        dead = GaugeMetricFamily("remediator_outbox_dead", "Notifications given up after their retries", labels=["channel"])
        oldest = GaugeMetricFamily("remediator_outbox_oldest_pending_seconds", "Age of the oldest notification not yet "
                                   "delivered", labels=["channel"])
        breakers = GaugeMetricFamily("remediator_breakers_open", "Open circuit breakers (automatic runs paused there)")
        waiting = GaugeMetricFamily("remediator_approvals_waiting", "Approval requests waiting for a person")
        expiry = GaugeMetricFamily("remediator_approval_next_expiry_seconds", "Seconds until the soonest waiting "
                                   "approval request expires (absent when none waits)")
        try:
            with self.store.read() as session:
                counts = dict(session.execute(select(Incident.state, func.count()).group_by(Incident.state)).all())
                pending = session.execute(select(OutboxMessage.channel, OutboxMessage.dead, func.count(),
                                                 func.min(OutboxMessage.created_at))
                                          .where(OutboxMessage.sent_at.is_(None))
                                          .group_by(OutboxMessage.channel, OutboxMessage.dead)).all()
                open_breakers = session.execute(select(func.count()).select_from(BreakerRow)
                                                .where(BreakerRow.open.is_(True))).scalar_one()
                n_waiting, soonest = session.execute(select(func.count(), func.min(Approval.expires_at))
                                                     .where(Approval.state == "pending")).one()
        except Exception:   # a scrape must not fail because the store is busy; the gauges are just absent
            return
        now = utcnow()
        for state in IncidentState:
            by_state.add_metric([state.value], counts.get(state.value, 0))
        for channel, is_dead, n, first in pending:
            (dead if is_dead else backlog).add_metric([channel], n)
            if not is_dead:
                oldest.add_metric([channel], max(0.0, (now - first).total_seconds()))
        breakers.add_metric([], open_breakers)
        waiting.add_metric([], n_waiting)
        if soonest is not None:
            expiry.add_metric([], (soonest - now).total_seconds())
        yield from (by_state, backlog, dead, oldest, breakers, waiting, expiry)


class Metrics:
    """One registry per engine (tests build several engines in one process)."""

    def __init__(self, store: Store | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhook_requests = Counter("remediator_webhook_requests", "Webhook requests by HTTP status",
                                        ["code"], registry=r)
        self.alerts = Counter("remediator_alerts_received", "Alerts received: new, or a duplicate of one stored",
                              ["outcome"], registry=r)
        self.runs = Counter("remediator_runs", "ansible-runner runs by entry, mode and outcome",
                            ["entry", "mode", "outcome"], registry=r)
        self.run_seconds = Histogram("remediator_run_duration_seconds", "ansible-runner run durations",
                                     ["entry", "mode"], buckets=_RUN_BUCKETS, registry=r)
        self.closed = Counter("remediator_incidents_closed", "Incidents reaching a final state", ["state"], registry=r)
        self.time_to_close = Histogram("remediator_incident_duration_seconds",
                                       "From the incident's first alert to its final state", ["state"],
                                       buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600), registry=r)
        self.plans = Counter("remediator_plans", "Planner outcomes: proposal, escalation, or fallback to the runbook planner",
                             ["planner", "outcome"], registry=r)
        self.breaker_opened = Counter("remediator_breaker_opened", "Circuit breakers opened, by scope", ["scope"], registry=r)
        self.llm_tokens = Counter("remediator_llm_tokens", "Tokens the LLM planner used", ["kind"], registry=r)
        self.notifications = Counter("remediator_notifications_sent", "Notifications delivered", ["channel"], registry=r)
        self.intake_backlog = Gauge("remediator_intake_backlog", "Alerts acknowledged, not yet taken into incidents",
                                    registry=r)
        self.intake_behind = Gauge("remediator_intake_behind_seconds", "How long taking in what waits would take the "
                                   "ingester at its recent rate (webhooks are held past intake_lag_max_s)", registry=r)
        self.intake_held = Gauge("remediator_intake_held_webhooks", "Webhooks whose answer is held for the ingester "
                                 "to have room", registry=r)
        self.intake_stuck = Gauge("remediator_intake_stuck", "1 while the store refuses what the ingester takes in",
                                  registry=r)
        self.up = Gauge("remediator_up", "serve's parts: running (1) or not (0)", ["part"], registry=r)
        self.leader = Gauge("remediator_leader", "1 while this replica runs the singletons (approval expiry, the "
                            "outbox, retention, take-over); one replica at a time", registry=r)
        self.audit_broken = Gauge("remediator_audit_chain_broken", "1 when the last check of the audit chain found "
                                  "an event edited, removed or reordered", registry=r)
        self.audit_verified = Gauge("remediator_audit_last_verified_timestamp_seconds", "When the audit chain was "
                                    "last checked (0: not yet)", registry=r)
        ProcessCollector(registry=r)   # process_start_time_seconds, memory, open files
        if store is not None:
            r.register(_StoreCollector(store))

    def count_close(self, state: str, seconds_open: float) -> None:
        """An incident reached a final state after `seconds_open`."""
        self.closed.labels(state).inc()
        self.time_to_close.labels(state).observe(seconds_open)

    def render(self) -> bytes:
        return generate_latest(self.registry)
