"""Second review, N4 and N5: whose alert is it? Correlation by `alertname|host` let an alert opened first (by any
sender) capture a real one, whose repeats were then duplicates of an incident a person had rejected: the real fault
was never handled. Any service token could resolve another sender's alert: the incident closed and its approval
was cancelled. Now every sender has a view of its own (an alert dedups against, joins and is resolved by what the
same sender posted) and an alert about another unit never joins (`correlation_labels`). Each attack has its control."""
import json

import pytest
from sqlalchemy import select

from remediator.engine.intake.incidents import refetched_for
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Approval, AuditEvent, Incident, utcnow
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]
REAL = (FIXTURES / "payloads" / "webapp-down-db-primary-01.json").read_bytes()        # service=webapp
DECOY = (FIXTURES / "payloads" / "api-gateway-down-db-primary-01.json").read_bytes()  # same alertname and host


def _resolved(body: bytes) -> bytes:
    payload = json.loads(body)
    payload["status"] = "resolved"
    for alert in payload["alerts"]:
        alert["status"], alert["endsAt"] = "resolved", "2026-11-24T03:09:00Z"
    return json.dumps(payload).encode()


@pytest.fixture
def engine(tmp_path, database_url):
    return new_engine(Settings(data_dir=tmp_path, database_url=database_url))


def _incident(engine, incident_id: str) -> Incident:
    with engine.store.read() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


def _reject(engine, incident_id: str) -> None:
    """What a person's rejection leaves: the incident closed."""
    with engine.store.write() as session:
        session.get(Incident, incident_id).state = IncidentState.REJECTED


# ---- N4: an alert opened first never captures another ------------------------------------------------------------

@pytest.mark.parametrize("decoy_sender", ["ci", "alertmanager"])
def test_an_alert_about_another_unit_opened_first_does_not_capture_the_real_one(engine, decoy_sender):
    (decoy,) = take_in(engine, DECOY, decoy_sender).incidents
    real = take_in(engine, REAL, "alertmanager")
    assert real.new_alerts == 1 and real.incidents != [decoy]
    assert _incident(engine, real.incidents[0]).labels["service"] == "webapp"   # what runbooks and gates read
    _reject(engine, decoy)
    again = take_in(engine, REAL, "alertmanager")   # Alertmanager's repeat: a duplicate of its own, open incident
    assert (again.new_alerts, again.incidents) == (0, real.incidents)
    assert _incident(engine, real.incidents[0]).state == IncidentState.RECEIVED


def test_the_same_alert_posted_first_by_another_sender_does_not_capture_it(engine):
    (decoy,) = take_in(engine, REAL, "ci").incidents   # the very alert, fingerprint and all
    real = take_in(engine, REAL, "alertmanager")
    assert real.new_alerts == 1 and real.incidents != [decoy], "counted as a duplicate of ci's copy"
    _reject(engine, decoy)
    assert _incident(engine, real.incidents[0]).state == IncidentState.RECEIVED


def test_the_control_one_senders_repeats_and_alerts_of_one_unit_join(engine):
    (first,) = take_in(engine, REAL, "alertmanager").incidents
    assert take_in(engine, REAL, "alertmanager").new_alerts == 0
    other_port = json.loads(REAL)
    other_port["alerts"][0] |= {"fingerprint": "b1b2c3d4e5f60799",
                                "labels": {**other_port["alerts"][0]["labels"], "instance": "db-primary-01:9100"}}
    joined = take_in(engine, json.dumps(other_port).encode(), "alertmanager")
    assert joined.new_alerts == 1 and joined.incidents == [first]


# ---- N5: only the sender that posted an alert resolves it ---------------------------------------------------------

def _awaiting_approval(engine, incident_id: str) -> None:
    with engine.store.write() as session:
        session.get(Incident, incident_id).state = IncidentState.AWAITING_APPROVAL
        session.add(Approval(id=f"ap-{incident_id}", incident_id=incident_id, preview_digest="d", state="pending",
                             expires_at=utcnow()))


def _approval(engine, incident_id: str) -> str:
    with engine.store.read() as session:
        return session.get(Approval, f"ap-{incident_id}").state


def test_another_senders_resolve_closes_nothing_and_is_audited(engine):
    (real,) = take_in(engine, REAL, "alertmanager").incidents
    _awaiting_approval(engine, real)
    forged = take_in(engine, _resolved(REAL), "ci")
    assert forged.incidents == [] and forged.new_alerts == 1          # kept, on no incident
    incident = _incident(engine, real)
    assert (incident.state, incident.firing) == (IncidentState.AWAITING_APPROVAL, True)
    assert _approval(engine, real) == "pending"
    with engine.store.read() as session:
        refused = session.execute(select(AuditEvent).where(AuditEvent.kind == "alert.resolve_refused")).scalar_one()
    assert refused.incident_id == real and refused.data["sender"] == "ci"
    # the real sender's resolve still counts: the forged one did not use it up as a duplicate
    resolved = take_in(engine, _resolved(REAL), "alertmanager")
    assert resolved.incidents == [real] and _incident(engine, real).state == IncidentState.RESOLVED
    assert _approval(engine, real) == "canceled"


def test_a_fetched_alert_is_resolved_by_the_sender_whose_delivery_was_truncated(engine):
    """What remediator fetches for a truncated delivery counts as that delivery's sender's (intake/refetch.py)."""
    (real,) = take_in(engine, REAL, refetched_for("alertmanager")).incidents
    assert take_in(engine, REAL, "alertmanager").new_alerts == 0        # the same view: a duplicate
    assert take_in(engine, _resolved(REAL), "ci").incidents == []
    assert take_in(engine, _resolved(REAL), "alertmanager").incidents == [real]
    assert _incident(engine, real).state == IncidentState.RESOLVED
