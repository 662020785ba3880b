"""Prometheus metrics. Counters count events in this process; incidents by state and the outbox
backlog are read from the store at scrape time, so they survive a restart and agree across processes."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from remediator.engine.model.states import IncidentState
from remediator.engine.store.db import Incident, OutboxMessage, Store

__all__ = ["Metrics"]

_RUN_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class _StoreCollector:
    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        by_state = GaugeMetricFamily("remediator_incidents", "Incidents by state", labels=["state"])
        backlog = GaugeMetricFamily("remediator_outbox_pending", "Notifications not yet delivered", labels=["channel"])
        dead = GaugeMetricFamily("remediator_outbox_dead", "Notifications given up after their retries", labels=["channel"])
        try:
            with self.store.read() as session:
                counts = dict(session.execute(select(Incident.state, func.count()).group_by(Incident.state)).all())
                pending = session.execute(select(OutboxMessage.channel, OutboxMessage.dead, func.count())
                                          .where(OutboxMessage.sent_at.is_(None))
                                          .group_by(OutboxMessage.channel, OutboxMessage.dead)).all()
        except Exception:   # a scrape must not fail because the store is busy; the gauges are just absent
            return
        for state in IncidentState:
            by_state.add_metric([state.value], counts.get(state.value, 0))
        for channel, is_dead, n in pending:
            (dead if is_dead else backlog).add_metric([channel], n)
        yield by_state
        yield backlog
        yield dead


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
        if store is not None:
            r.register(_StoreCollector(store))

    def count_close(self, state: str, seconds_open: float) -> None:
        """An incident reached a final state after `seconds_open`."""
        self.closed.labels(state).inc()
        self.time_to_close.labels(state).observe(seconds_open)

    def render(self) -> bytes:
        return generate_latest(self.registry)
