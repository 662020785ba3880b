"""Incidents: dedup, correlation, close-on-resolved, priority, and every state change (audited).

- Every sender (service token) has a view of its own: an alert dedups against, joins and is resolved by only what
  the same sender posted. Another token can neither capture a real alert nor resolve it. What remediator fetches
  for a truncated delivery counts as posted by that delivery's sender (`refetched_for`).
- Dedup per alert on (fingerprint, startsAt, status, sender): retries, HA peers (give them one token) and group
  re-sends deliver the same alert again; the second copy changes nothing.
- Correlation: firing alerts of one alertname on one host, from one sender, with the same decisive labels
  (`correlation_labels`: `service`) join the open incident of that key; an alert about another unit never joins
  it (and so is never counted as a duplicate of what a person rejected).
- A cap per sender: past `sender_incidents_per_minute` new incidents in a minute, a sender's further alerts
  (that would open more) are kept on one overflow incident, escalated at once: one POST cannot make
  thousands of incidents and messages, and nothing it sent is dropped.
- A resolved alert closes its incident when nothing has run yet (and cancels a pending approval);
  an incident being worked on is only marked not firing: the worker checks that before it runs. Another sender's
  resolve of it is kept and audited (`alert.resolve_refused`) and changes nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from remediator.engine.catalog.inventory import Inventory, strip_port
from remediator.engine.intake.targets import host_from_labels
from remediator.engine.model.alerts import Alert
from remediator.engine.model.ids import new_incident_id
from remediator.engine.model.states import FINAL_STATES, ApprovalState, IncidentState
from remediator.engine.outbound.notify import NotifyEvent
from remediator.engine.store import audit
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import AlertRow, Approval, Incident, core, utcnow

__all__ = ["Attacher", "AttachOutcome", "OVERFLOW", "REFETCH_SENDER", "refetched_for", "owner_of", "priority_of",
           "note_truncation", "still_firing", "close_if_quiet", "SEVERITY_PRIORITY"]

#: what fetching a truncated group's other alerts records as their poster (remediator/engine/intake/refetch.py)
REFETCH_SENDER = "remediator:refetch"


def refetched_for(sender: str | None) -> str:
    """The sender recorded for alerts fetched because `sender`'s delivery was truncated."""
    return f"{REFETCH_SENDER}:{sender or ''}"


def owner_of(sender: str | None) -> str:
    """Whose view an alert belongs to: its poster's, or for fetched alerts the truncated delivery's sender's."""
    sender = sender or ""
    return sender.removeprefix(REFETCH_SENDER + ":")


#: The correlation key prefix of a sender's overflow incident (see Attacher._overflow).
OVERFLOW = "overflow|"
#: Lower number = worked on first.
SEVERITY_PRIORITY = {"critical": 0, "page": 0, "error": 1, "high": 1, "warning": 2, "medium": 2,
                     "info": 3, "low": 3}
_OPEN = [s.value for s in IncidentState if s not in FINAL_STATES]
#: Nothing has run on a host yet in these states, so a resolved alert can simply close the incident.
_CLOSABLE = {IncidentState.RECEIVED, IncidentState.AWAITING_APPROVAL, IncidentState.APPROVED}


def priority_of(severity: str) -> int:
    return SEVERITY_PRIORITY.get(severity.lower(), 4)


@dataclass(frozen=True)
class AttachOutcome:
    incident_id: str | None
    new: bool                           # False: a duplicate of an alert already stored
    closed_from: str | None = None      # the state a resolved alert closed the incident from


def _starts_at(alert: Alert) -> str:
    # Milliseconds: the webhook sends startsAt with nanoseconds, Alertmanager's API v2 with
    # milliseconds (truncated); the same alert from either must get the same identity.
    at = alert.startsAt.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Correlation:
    """The settings intake reads (Settings.section(Correlation)): which labels name the host, which decide whether
    two alerts are one incident, and each sender's cap."""

    target_labels: tuple[str, ...]
    correlation_labels: tuple[str, ...]
    sender_incidents_per_minute: int


class Attacher:
    """Attach the alerts of one write transaction: what the store knows about them is read once.

    Dedup and correlation look up every alert of the batch in two queries instead of two per
    alert, and the rows go in together; an alert seen earlier in the same batch counts as stored.
    The audit head is locked first, so a second process's intake waits and then sees these rows."""

    def __init__(self, session: Session, posted: list[tuple[Alert, str | None]], inventory: Inventory, lifecycle: Lifecycle,
                 settings: Correlation):
        """`posted`: the batch's alerts, each with the sender (service token) that posted it."""
        self.session, self.inventory, self.lifecycle, self.settings = session, inventory, lifecycle, settings
        self.target_labels = target_labels = list(settings.target_labels)
        audit.lock(session)
        alerts = [a for a, _ in posted]
        fingerprints = sorted({a.fingerprint for a in alerts})
        self.known: dict[tuple[str, str, str, str], str | None] = {}   # (fingerprint, startsAt, status, owner)
        self.fired: dict[tuple[str, str], str] = {}   # (fingerprint, startsAt) -> some sender's incident of it
        for chunk in _chunks(fingerprints):
            for fp, starts_at, status, incident_id, owner in session.execute(select(
                    AlertRow.fingerprint, AlertRow.starts_at, AlertRow.status, AlertRow.incident_id, AlertRow.owner)
                    .where(AlertRow.fingerprint.in_(chunk))):
                self.known[(fp, starts_at, status, owner)] = incident_id
                if status == "firing" and incident_id:
                    self.fired[(fp, starts_at)] = incident_id
        self.targets = {id(a): host_from_labels(a.labels, inventory, target_labels)
                        for a in alerts if a.status == "firing"}
        self.keys = {id(a): self._key(a, self.targets[id(a)][0], sender) for a, sender in posted if a.status == "firing"}
        keys = sorted(set(self.keys.values()))
        self.open: dict[str, Incident] = {}
        for chunk in _chunks(keys):
            for incident in session.execute(select(Incident).where(Incident.correlation_key.in_(chunk),
                                                                   Incident.state.in_(_OPEN))
                                            .order_by(Incident.created_at)).scalars():
                self.open[incident.correlation_key] = incident   # the newest wins
        self._rows: list[dict[str, Any]] = []
        self.hostless: dict[str, tuple[Incident, int]] = {}   # opened for no inventory host, by the delivery
        self._budget: dict[str, int] = {}                     # new incidents each sender may still open
        self._joined: dict[str, Incident] = {}                # overflow keys -> the sender's (closed) overflow incident
        self._overflows: dict[str | None, tuple[str, None, str]] = {}   # each sender's overflow key, once a batch

    def attach(self, delivery_id: int, alert: Alert, sender: str | None = None) -> AttachOutcome:
        """Store one alert (unless it is a duplicate) and open, join or close its incident."""
        starts_at = _starts_at(alert)
        identity = (alert.fingerprint, starts_at, alert.status, owner_of(sender))
        if identity in self.known:
            return AttachOutcome(self.known[identity], new=False)
        incident: Incident | None
        refused = False
        joined: str | None = None   # the correlation key of the open incident a firing alert joined
        if alert.status == "firing":
            host, how = self.targets[id(alert)]
            key = self.keys[id(alert)]
            if not self._joins(key) and not self._spend(sender):
                key, host, how = self._overflow(sender)
            incident, joins = self._open_incident(alert, key, host, how, sender)
            joined = key if joins else None
            if host is None:
                self.hostless.setdefault(incident.id, (incident, delivery_id))
        else:
            firing = self.known.get((alert.fingerprint, starts_at, "firing", owner_of(sender)))
            refused = not firing and (alert.fingerprint, starts_at) in self.fired
            if refused:
                audit.append(self.session, "alert.resolve_refused", {   # kept (below); closes nothing
                    "fingerprint": alert.fingerprint, "alertname": alert.alertname, "sender": sender,
                    "why": "only the sender that posted the firing alert resolves it"},
                    self.fired[(alert.fingerprint, starts_at)])
            incident = self.session.get(Incident, firing) if firing else None
        self.known[identity] = incident.id if incident else None
        self._rows.append(dict(delivery_id=delivery_id, incident_id=incident.id if incident else None,
                               fingerprint=alert.fingerprint, starts_at=starts_at, status=alert.status,
                               alertname=alert.alertname, severity=alert.severity, labels=dict(alert.labels),
                               annotations=dict(alert.annotations), generator_url=alert.generatorURL,
                               received_at=utcnow(), owner=owner_of(sender)))
        if incident is None:
            if not refused:
                audit.append(self.session, "alert.resolved_unmatched", {"fingerprint": alert.fingerprint,
                                                                        "alertname": alert.alertname})
            return AttachOutcome(None, new=True)
        # One event an alert, even under a storm: it names the incident, and whether the alert joined it (correlation)
        # or opened it (then `incident.opened` came just before)
        audit.append(self.session, f"alert.{alert.status}", {"fingerprint": alert.fingerprint, "starts_at": starts_at,
                                                              "alertname": alert.alertname, "labels": dict(alert.labels),
                                                              "delivery": delivery_id, "sender": sender,
                                                              **({"joined": joined} if joined else {})},
                     incident.id)
        if alert.status == "resolved":
            self.flush()   # still_firing() reads the rows
            return AttachOutcome(incident.id, new=True, closed_from=close_if_quiet(self.session, incident, self.lifecycle))
        if not incident.firing:   # an ORM attribute set is an event: not once an alert of a storm
            incident.firing = True
        self.fired[(alert.fingerprint, starts_at)] = incident.id
        return AttachOutcome(incident.id, new=True)

    def flush(self) -> None:
        """Write the alert rows attached so far (one statement)."""
        self.session.flush()   # their new incidents first
        if self._rows:   # Core, not the ORM's bulk insert: thousands of rows a batch, and no object is wanted back
            self.session.connection().execute(insert(core(AlertRow)), self._rows)
            self._rows = []

    def _key(self, alert: Alert, host: str | None, sender: str | None) -> str:
        """alertname|host (for a host not in the inventory: its label value without the port, or the fingerprint),
        then the decisive labels and the sender: only an alert that would be decided the same way joins."""
        if host:
            where = host
        else:
            where = "?" + next((strip_port(alert.labels[name]) for name in self.target_labels if alert.labels.get(name)),
                               alert.fingerprint)
        decisive = "|".join(f"{name}={alert.labels.get(name, '')}" for name in self.settings.correlation_labels)
        return f"{alert.alertname}|{where}|{decisive}|{owner_of(sender)}"

    def _joins(self, key: str) -> bool:
        incident = self.open.get(key)
        return incident is not None and incident.state in _OPEN

    def _spend(self, sender: str | None) -> bool:
        """Take one new incident from the sender's budget for this minute; False when it is spent."""
        if sender is None:
            return True
        if sender not in self._budget:
            cap = self.settings.sender_incidents_per_minute
            since = utcnow() - timedelta(minutes=1)
            opened = self.session.execute(select(func.count()).select_from(Incident).where(
                Incident.sender == sender, Incident.created_at >= since)).scalar_one()
            self._budget[sender] = cap - opened
        self._budget[sender] -= 1
        return self._budget[sender] >= 0

    def _overflow(self, sender: str | None) -> tuple[str, None, str]:
        if sender not in self._overflows:
            cap = self.settings.sender_incidents_per_minute
            self._overflows[sender] = (
                f"{OVERFLOW}{sender}|{utcnow():%Y%m%d%H%M}", None,
                f"{sender} opened {cap} incidents within a minute (sender_incidents_per_minute); its further alerts "
                "are kept on this incident for a person, and nothing was run for them")
        return self._overflows[sender]

    def _open_incident(self, alert: Alert, key: str, host: str | None, how: str, sender: str | None = None
                       ) -> tuple[Incident, bool]:
        """The incident the alert joins (True), or a new one it opens (False)."""
        incident = self.open.get(key)
        if (incident is None or incident.state not in _OPEN) and key.startswith(OVERFLOW) and key not in self._joined:
            # A sender's overflow incident is escalated (closed) at once; its later alerts within the minute still
            # join it, whichever delivery or batch they come in, so a flood opens one and tells people once.
            incident = self.session.execute(select(Incident).where(
                Incident.sender == sender, Incident.correlation_key.startswith(OVERFLOW),
                Incident.created_at >= utcnow() - timedelta(minutes=1))
                .order_by(Incident.created_at.desc()).limit(1)).scalar_one_or_none()
            if incident is not None:
                self.open[key] = self._joined[key] = incident   # read once a batch, not once an alert
        if key in self._joined:
            return self._joined[key], True
        if incident is not None and incident.state in _OPEN:
            return incident, True
        incident = Incident(id=new_incident_id(), correlation_key=key, alertname=alert.alertname, host=host,
                            severity=alert.severity, priority=priority_of(alert.severity), state=IncidentState.RECEIVED,
                            firing=True, labels=dict(alert.labels), annotations=dict(alert.annotations),
                            evidence={}, reason="" if host else how, generator_url=alert.generatorURL,
                            created_at=utcnow(), updated_at=utcnow(), sender=sender)
        self.session.add(incident)
        self.open[key] = incident
        audit.append(self.session, "incident.opened", {"alertname": alert.alertname, "host": host, "target": how,
                                                       "severity": alert.severity, "key": key}, incident.id)
        return incident, False


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def still_firing(session: Session, incident_id: str) -> bool:
    """True while some firing alert of the incident has no resolved notification yet."""
    rows = session.execute(select(AlertRow.fingerprint, AlertRow.starts_at, AlertRow.status)
                           .where(AlertRow.incident_id == incident_id)).all()
    resolved = {(f, s) for f, s, st in rows if st == "resolved"}
    return any(st == "firing" and (f, s) not in resolved for f, s, st in rows)


def close_if_quiet(session: Session, incident: Incident, lifecycle: Lifecycle) -> str | None:
    """After a resolved alert: mark the incident not firing; close it if nothing has run yet.

    Returns the state it was closed from, or None when it stays as it is."""
    if still_firing(session, incident.id):
        return None
    incident.firing = False
    state = IncidentState(incident.state)
    if state not in _CLOSABLE:
        return None
    for approval in session.execute(select(Approval).where(Approval.incident_id == incident.id,
                                                           Approval.state == ApprovalState.PENDING)).scalars():
        approval.state = ApprovalState.CANCELED
        approval.decided_at = utcnow()
        approval.comment = "the alert resolved"
    # People were told only once an approval was requested: then they hear that it resolved on its own.
    told = state in (IncidentState.AWAITING_APPROVAL, IncidentState.APPROVED)
    lifecycle.close(session, incident, IncidentState.RESOLVED, "the alert resolved before anything ran; nothing was changed",
                    event="incident.auto_resolved", notice=NotifyEvent.AUTO_RESOLVED if told else None)
    return state.value


def note_truncation(session: Session, incident_ids: list[str], truncated: int) -> None:
    """Alertmanager left alerts out (max_alerts); say so on every incident of the delivery."""
    for incident_id in incident_ids:
        incident = session.get(Incident, incident_id)
        if incident is None:
            continue
        incident.truncated = max(incident.truncated, truncated)
        audit.append(session, "delivery.truncated", {"truncated_alerts": truncated}, incident_id)
