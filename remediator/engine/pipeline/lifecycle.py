"""Every state change of an incident, checked against the transition table (remediator/engine/model/states.py).

`move()` is a step between held states; `close()` is the only way into a final state, and it does what
every final state needs, whoever closes (a worker, a person's reject, expiry, a resolved alert, intake):
the metrics, the notification, and the circuit breaker's bookkeeping after a real run.
Both write in the caller's transaction, so the state, its audit event and its notification commit together.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from remediator.engine.decide import breaker
from remediator.engine.errors import IllegalTransition
from remediator.engine.intake.targets import Inventory
from remediator.engine.model.states import FINAL_STATES, TRANSITIONS, IncidentState, RunMode
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.notify import NotifyEvent, notify_incident
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.db import Approval, BreakerRow, Incident, Run, utcnow

__all__ = ["Lifecycle", "check", "DEFAULT_NOTICE"]

#: What people are told when an incident closes in a state, unless the closer says otherwise.
DEFAULT_NOTICE: dict[IncidentState, NotifyEvent | None] = {
    IncidentState.DENIED: NotifyEvent.DENIED, IncidentState.FAILED: NotifyEvent.FAILED,
    IncidentState.ESCALATED: NotifyEvent.ESCALATED, IncidentState.EXPIRED: NotifyEvent.EXPIRED,
    IncidentState.REJECTED: NotifyEvent.REJECTED,
}   # resolved: the closer says whether it was fixed or resolved on its own
_DEFAULT = object()


def check(previous: IncidentState | str, state: IncidentState) -> None:
    """Raise IllegalTransition unless the table allows previous -> state."""
    before = IncidentState(previous)
    if state not in TRANSITIONS[before]:
        allowed = ", ".join(sorted(TRANSITIONS[before])) or "nothing (it is final)"
        raise IllegalTransition(f"an incident cannot go from {before.value} to {state.value}; from {before.value} "
                                f"it may go to {allowed}")


class Lifecycle:
    """The moves of incidents and the side effects of closing them; one per running engine."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, inventory: Inventory | None = None, *,
                 on_close: Callable[[str, float], None] | None = None):
        self.settings = settings
        self.metrics = metrics      # None in one-off CLI commands: no /metrics there to count for
        self.on_close = on_close    # hears each close (state, seconds open) where the metrics are another process's
        self.inventory = inventory  # the host groups the boundary learns per (None: it learns per entry only)

    def move(self, session: Session, inc: Incident, state: IncidentState, reason: str = "", *,
             event: str | None = None, data: dict[str, Any] | None = None,
             notice: NotifyEvent | None = None, approval: Approval | None = None) -> None:
        """A move to a state that is not final (use close() for those)."""
        if state in FINAL_STATES:
            raise IllegalTransition(f"{state.value} is a final state: only close() goes there")
        self._write(session, inc, state, reason, event, data)
        if notice is not None:
            notify_incident(session, self.settings, inc, notice, reason, approval=approval)

    def close(self, session: Session, inc: Incident, state: IncidentState, reason: str, *,
              notice: NotifyEvent | None | object = _DEFAULT, event: str | None = None,
              data: dict[str, Any] | None = None) -> None:
        """Into a final state: the state, metrics, the notification (DEFAULT_NOTICE unless given; None: tell
        nobody) and, after a real run, the circuit breaker."""
        if state not in FINAL_STATES:
            raise IllegalTransition(f"{state.value} is not a final state: use move()")
        self._write(session, inc, state, reason, event, data)
        seconds_open = (utcnow() - inc.created_at).total_seconds()
        if self.metrics is not None:
            self.metrics.count_close(state.value, seconds_open)
        if self.on_close is not None:
            self.on_close(state.value, seconds_open)
        note = DEFAULT_NOTICE.get(state) if notice is _DEFAULT else notice
        if isinstance(note, NotifyEvent):
            notify_incident(session, self.settings, inc, note, reason)
        if state in (IncidentState.RESOLVED, IncidentState.FAILED, IncidentState.ESCALATED) and inc.entry and \
                session.execute(select(Run.id).where(Run.incident_id == inc.id, Run.mode == RunMode.APPLY)
                                .limit(1)).first():
            for scope in breaker.record_outcome(session, self.settings, inc, self._groups(inc.host)):
                if self.metrics is not None:
                    self.metrics.breaker_opened.labels(scope).inc()
                row = session.get(BreakerRow, scope)
                notify_incident(session, self.settings, inc, NotifyEvent.BREAKER_OPEN, row.reason if row else scope,
                                dedup_key=f"breaker:{scope}")

    def _groups(self, host: str | None) -> dict[str, list[str]]:
        """The host's inventory groups, each with its hosts."""
        if self.inventory is None or host is None:
            return {}
        hosts = self.inventory.hosts
        return {g: [h for h, gs in hosts.items() if g in gs] for g in hosts.get(host, [])}

    @staticmethod
    def _write(session: Session, inc: Incident, state: IncidentState, reason: str, event: str | None,
               data: dict[str, Any] | None) -> None:
        previous = inc.state
        check(previous, state)
        inc.state = state
        if reason:
            inc.reason = reason
        if state in FINAL_STATES:
            inc.closed_at = utcnow()
            inc.claimed_at = None
        audit.append(session, event or f"incident.{state.value}",
                     {"from": previous, "to": state.value, "reason": reason, **(data or {})}, inc.id)
