"""Every state change of an incident, checked against the transition table (remediator/engine/model/states.py).

`move()` is a step between held states; `close()` is the only way into a final state, and it does what every
final state needs, whoever closes (a worker, a person's reject, expiry, a resolved alert, intake): the notification
and the hooks the wiring hands in (the metrics, the circuit breaker's bookkeeping after a real run: outbound/
metrics.py, decide/breaker.py). Both write in the caller's transaction, so the state, its audit event and its
notification commit together. This is the one writer of an incident's state, so it stands on the store's floor and
knows none of what hears it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from remediator.engine.errors import IllegalTransition
from remediator.engine.model.states import FINAL_STATES, TRANSITIONS, IncidentState, NotifyEvent
from remediator.engine.store import audit
from remediator.engine.store.tables import Approval, Incident, utcnow

__all__ = ["Lifecycle", "check", "DEFAULT_NOTICE", "Notice", "OnClose"]


class Notice(Protocol):
    """Tells people about an incident, in the caller's transaction (outbound/notify.py's `notice(settings)`)."""

    def __call__(self, session: Session, inc: Incident, event: NotifyEvent, reason: str, *,
                 approval: Approval | None = None, dedup_key: str = "") -> None: ...


#: Hears every close, in the closer's transaction, after its notification: (session, incident, state, seconds open).
OnClose = Callable[[Session, Incident, IncidentState, float], None]

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
    """The moves of incidents and the side effects of closing them; one per running engine. With no `notice`
    nobody is told (a one-off command whose outbox someone else delivers hands the notifier's in)."""

    def __init__(self, *, notice: Notice | None = None, on_close: Sequence[OnClose] = ()):
        self.notice = notice
        self.on_close = list(on_close)

    def move(self, session: Session, inc: Incident, state: IncidentState, reason: str = "", *,
             event: str | None = None, data: dict[str, Any] | None = None,
             notice: NotifyEvent | None = None, approval: Approval | None = None) -> None:
        """A move to a state that is not final (use close() for those)."""
        if state in FINAL_STATES:
            raise IllegalTransition(f"{state.value} is a final state: only close() goes there")
        self._write(session, inc, state, reason, event, data)
        if notice is not None and self.notice is not None:
            self.notice(session, inc, notice, reason, approval=approval)

    def close(self, session: Session, inc: Incident, state: IncidentState, reason: str, *,
              notice: NotifyEvent | None | object = _DEFAULT, event: str | None = None,
              data: dict[str, Any] | None = None) -> None:
        """Into a final state: the state, the notification (DEFAULT_NOTICE unless given; None: tell nobody), then
        every on_close hook."""
        if state not in FINAL_STATES:
            raise IllegalTransition(f"{state.value} is not a final state: use move()")
        self._write(session, inc, state, reason, event, data)
        seconds_open = (utcnow() - inc.created_at).total_seconds()
        note = DEFAULT_NOTICE.get(state) if notice is _DEFAULT else notice
        if isinstance(note, NotifyEvent) and self.notice is not None:
            self.notice(session, inc, note, reason)
        for hook in self.on_close:
            hook(session, inc, state, seconds_open)

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
