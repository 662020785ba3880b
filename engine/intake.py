"""Intake: a webhook body becomes stored alerts and incidents, in one transaction, before any answer.

Alertmanager retries on 5xx only and drops what got a 4xx, so: a body that is wrong raises
PayloadError (4xx, naming the field); a body we cannot store raises StoreUnavailable (503, it comes
again); anything else is committed first and worked on afterwards, from the store.
"""
from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from engine import audit, incidents
from engine.alerts import AlertmanagerPayload
from engine.errors import PayloadError, StoreUnavailable
from engine.models import IncidentState
from engine.notify import NotifyEvent, notify_incident
from engine.settings import Settings
from engine.store import Delivery, Incident, Store, utcnow
from engine.targets import Inventory

__all__ = ["parse_payload", "accept", "accept_many", "GroupCommit", "note_refetch", "IntakeResult"]

#: An incident closed from these states was announced (approval requested): announce the close too.
_PEOPLE_WERE_TOLD = {IncidentState.AWAITING_APPROVAL.value, IncidentState.APPROVED.value}


def parse_payload(body: bytes) -> AlertmanagerPayload:
    """Validate a webhook body; PayloadError names the field that is wrong."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}", status=400) from None
    except RecursionError:
        raise PayloadError("the body is JSON nested too deeply to be an Alertmanager webhook", status=400) from None
    if not isinstance(raw, dict):
        raise PayloadError(f"the body must be a JSON object (Alertmanager webhook v4), got {type(raw).__name__}")
    try:
        return AlertmanagerPayload.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors()[:10]:
            where = ".".join(str(p) for p in e["loc"]) or "body"
            problems.append(f"{where}: {e['msg']}")
        raise PayloadError("invalid Alertmanager payload: " + "; ".join(problems)) from None


@dataclass
class IntakeResult:
    delivery_id: int
    alerts: int
    new_alerts: int
    duplicates: int
    incidents: list[str] = field(default_factory=list)   # incidents opened or touched
    escalated: list[str] = field(default_factory=list)   # opened for no inventory host: nothing can be run


def accept(store: Store, payload: AlertmanagerPayload, inventory: Inventory, settings: Settings) -> IntakeResult:
    """Store one delivery, its alerts and their incidents; StoreUnavailable when the store can't."""
    return accept_many(store, [payload], inventory, settings)[0]


def accept_many(store: Store, payloads: list[AlertmanagerPayload], inventory: Inventory, settings: Settings
                ) -> list[IntakeResult]:
    """Store several deliveries in ONE transaction (one fsync), in order: the group commit's unit."""
    with store.write() as session:
        # Core statements, not ORM objects: one INSERT for every delivery of the batch.
        delivery_ids = session.execute(insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True), [
            {"group_key": p.groupKey, "status": p.status, "alerts_count": len(p.alerts), "truncated": p.truncatedAlerts,
             "body": p.model_dump(mode="json"), "received_at": utcnow(), "new_alerts": 0} for p in payloads]).scalars().all()
        attacher = incidents.Attacher(session, [a for p in payloads for a in p.alerts], inventory, settings.target_labels)
        results = []
        for payload, delivery_id in zip(payloads, delivery_ids):
            touched: list[str] = []
            new = 0
            for alert in payload.alerts:
                outcome = attacher.attach(delivery_id, alert)
                new += outcome.new
                if outcome.closed_from in _PEOPLE_WERE_TOLD:
                    notify_incident(session, settings, session.get(Incident, outcome.incident_id),
                                    NotifyEvent.AUTO_RESOLVED, "the alert resolved before anything ran; nothing was changed")
                if outcome.incident_id and outcome.incident_id not in touched:
                    touched.append(outcome.incident_id)
            if payload.truncatedAlerts:
                attacher.flush()
                incidents.note_truncation(session, touched, payload.truncatedAlerts)
            results.append(IntakeResult(delivery_id=delivery_id, alerts=len(payload.alerts), new_alerts=new,
                                        duplicates=len(payload.alerts) - new, incidents=touched))
        by_delivery = {r.delivery_id: r for r in results}
        for incident_id, (incident, delivery_id) in attacher.hostless.items():
            _escalate_hostless(session, settings, incident)
            by_delivery[delivery_id].escalated.append(incident_id)
        attacher.flush()
        counted = [{"id": r.delivery_id, "new_alerts": r.new_alerts} for r in results if r.new_alerts]
        if counted:
            session.execute(update(Delivery), counted)
        return results


def _escalate_hostless(session: Session, settings: Settings, incident: Incident) -> None:
    """An incident on no inventory host can't be diagnosed or fixed: tell people now, not via a worker."""
    if incident.state != IncidentState.RECEIVED:   # closed meanwhile by its resolved alert
        return
    reason = f"no target host: {incident.reason}"
    incidents.transition(session, incident, IncidentState.ESCALATED, reason)
    notify_incident(session, settings, incident, NotifyEvent.ESCALATED, reason)


class GroupCommit:
    """Webhooks that arrive while a transaction is committing are stored together in the next one.

    The fsync that makes an acknowledgement durable is the cost of intake; under a storm one fsync
    then covers every webhook waiting, instead of one each. The caller's thread does the work (the
    first to find nobody committing leads, the others wait for its result), so there is no thread to
    start or lose, and every caller still gets its answer only after its delivery is on disk."""

    def __init__(self, store: Store, inventory: Inventory, settings: Settings):
        self.store, self.inventory, self.settings = store, inventory, settings
        self._cv = threading.Condition()
        self._waiting: list[tuple[AlertmanagerPayload, Future[IntakeResult]]] = []
        self._committing = False

    def accept(self, payload: AlertmanagerPayload) -> IntakeResult:
        """Store this delivery (with whatever else is waiting); returns once it is committed."""
        mine: Future[IntakeResult] = Future()
        with self._cv:
            self._waiting.append((payload, mine))
            while self._committing and not mine.done():
                self._cv.wait()
            if not mine.done():
                self._committing = True
                batch, self._waiting = self._waiting, []
        if not mine.done():
            try:
                self._commit(batch)
            finally:
                with self._cv:
                    self._committing = False
                    self._cv.notify_all()
        return mine.result()

    def _commit(self, batch: list[tuple[AlertmanagerPayload, Future[IntakeResult]]]) -> None:
        try:
            results = accept_many(self.store, [p for p, _ in batch], self.inventory, self.settings)
        except StoreUnavailable as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        except Exception:
            if len(batch) == 1:
                batch[0][1].set_exception(sys.exc_info()[1])   # type: ignore[arg-type]
                return
            # One delivery broke the batch: store the others each on its own, so only it fails.
            for one in batch:
                self._commit([one])
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)


def note_refetch(store: Store, result: IntakeResult, outcome: str) -> None:
    """Record on the delivery's incidents what fetching a truncated group's other alerts gave."""
    with store.write() as session:
        for incident_id in result.incidents:
            audit.append(session, "delivery.refetched", {"delivery": result.delivery_id, "outcome": outcome}, incident_id)
