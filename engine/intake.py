"""Intake: a webhook body becomes stored alerts and incidents, in ONE transaction, before any answer.

Alertmanager retries on 5xx only and drops what got a 4xx, so: a body that is wrong raises
PayloadError (4xx, naming the field); a body we cannot store raises StoreUnavailable (503, it comes
again); anything else is committed first and worked on afterwards, from the store.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import ValidationError

from engine import audit, incidents
from engine.alerts import AlertmanagerPayload
from engine.errors import PayloadError
from engine.models import IncidentState
from engine.notify import NotifyEvent, notify_incident
from engine.settings import Settings
from engine.store import Delivery, Incident, Store
from engine.targets import Inventory

__all__ = ["parse_payload", "accept", "note_refetch", "IntakeResult"]

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


def accept(store: Store, payload: AlertmanagerPayload, inventory: Inventory, settings: Settings) -> IntakeResult:
    """Store the delivery, its alerts and their incidents; StoreUnavailable when the store can't."""
    with store.write() as session:
        delivery = Delivery(group_key=payload.groupKey, status=payload.status, alerts_count=len(payload.alerts),
                            truncated=payload.truncatedAlerts, body=payload.model_dump(mode="json"))
        session.add(delivery)
        session.flush()
        touched: list[str] = []
        new = 0
        for alert in payload.alerts:
            outcome = incidents.attach(session, delivery.id, alert, inventory, settings.target_labels)
            if outcome.new:
                new += 1
            if outcome.closed_from in _PEOPLE_WERE_TOLD:
                notify_incident(session, settings, session.get(Incident, outcome.incident_id),
                                NotifyEvent.AUTO_RESOLVED, "the alert resolved before anything ran; nothing was changed")
            if outcome.incident_id and outcome.incident_id not in touched:
                touched.append(outcome.incident_id)
        if payload.truncatedAlerts:
            incidents.note_truncation(session, touched, payload.truncatedAlerts)
        delivery.new_alerts = new
        return IntakeResult(delivery_id=delivery.id, alerts=len(payload.alerts), new_alerts=new,
                            duplicates=len(payload.alerts) - new, incidents=touched)


def note_refetch(store: Store, result: IntakeResult, outcome: str) -> None:
    """Record on the delivery's incidents what fetching a truncated group's other alerts gave."""
    with store.write() as session:
        for incident_id in result.incidents:
            audit.append(session, "delivery.refetched", {"delivery": result.delivery_id, "outcome": outcome}, incident_id)
