"""Finding 8: any person's token, even a viewer's, could post webhooks, so a viewer could trigger fixes and an
approver could post an alert and approve what it created; a delivery did not record who posted it. Alerts come
with a service token only, each delivery keeps its poster, and the poster never decides on what it created."""
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.errors import ConflictError, Forbidden
from remediator.engine.model.states import IncidentState
from remediator.engine.people import approvals
from remediator.engine.settings import Settings
from remediator.engine.store.tables import AuditEvent, Incident
from tests.engines import new_engine
from tests.unit.test_approvals import waiting

pytestmark = [pytest.mark.security, pytest.mark.unit]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()


@pytest.mark.parametrize("role", ["viewer", "approver", "admin"])
def test_a_persons_token_cannot_post_alerts(tmp_path, role):
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["service-token-0123456789ab"]))
    _, token = engine.identities.add("pat", role)
    with TestClient(create_app(engine, start_engine=False)) as client:
        r = client.post("/webhook/alertmanager", content=SAMPLE,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert r.status_code == 403 and "service token" in r.json()["detail"]
        ok = client.post("/webhook/alertmanager", content=SAMPLE,     # the control: the service token posts
                         headers={"Authorization": "Bearer service-token-0123456789ab", "Content-Type": "application/json"})
        assert ok.status_code == 200


def test_each_delivery_records_the_service_token_that_posted_it(tmp_path):
    """The poster is kept with the delivery and in the audit: `name:secret` tokens by name, others by place."""
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["alertmanager:Zq3-long-random-secret-4f9c", "plain-token-two-0123456789ab"]))
    with TestClient(create_app(engine, start_engine=False)) as client:
        posted = {}
        other = json.loads(SAMPLE)
        other["alerts"] = [{**a, "fingerprint": f"{n:016x}"} for n, a in enumerate(other["alerts"], 1)]
        for token, body in (("alertmanager:Zq3-long-random-secret-4f9c", SAMPLE), ("plain-token-two-0123456789ab", json.dumps(other))):
            r = client.post("/webhook/alertmanager", content=body,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            posted[token] = r.json()["delivery"]
        wrong = client.post("/webhook/alertmanager", content=SAMPLE,    # the name alone is not the token
                            headers={"Authorization": "Bearer Zq3-long-random-secret-4f9c", "Content-Type": "application/json"})
        assert wrong.status_code == 401
        assert engine.ingester.wait_idle(30)
        seen = {t: client.get(f"/deliveries/{d}", headers={"Authorization": f"Bearer {t}"}).json()["sender"]
                for t, d in posted.items()}
    assert seen == {"alertmanager:Zq3-long-random-secret-4f9c": "alertmanager", "plain-token-two-0123456789ab": "service-2"}
    with engine.store.read() as session:
        senders = {e.data["sender"] for e in session.execute(select(AuditEvent).where(AuditEvent.kind == "alert.firing")).scalars()}
    assert senders == {"alertmanager", "service-2"}
    engine.ingester.stop()


def test_a_person_cannot_take_a_senders_name(tmp_path):
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["alertmanager:Zq3-long-random-secret-4f9c", "plain-token-two-0123456789ab"]))
    for name in ("alertmanager", "Alertmanager", "service-2", "service-7"):
        with pytest.raises(ConflictError, match="service token's name"):
            engine.identities.add(name, "approver")


def test_whoever_posted_the_alert_does_not_approve_its_fix(tmp_path):
    """Names are kept apart, but if one slips through (a token renamed after its alerts came in), the vote fails."""
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["service-token-0123456789ab"]))
    _, token = engine.identities.add("pat", "approver")
    pat = engine.identities.authenticate(token)
    incident_id, approval_id = waiting(engine, sender="pat")
    with pytest.raises(Forbidden, match="pat posted the alert behind incident"):
        approvals.vote(engine.store, engine.lifecycle, approval_id, pat, approve=True)
    _, other = engine.identities.add("quinn", "approver")       # the control: someone else may
    assert approvals.vote(engine.store, engine.lifecycle, approval_id, engine.identities.authenticate(other),
                          approve=True) == "approved"
    with engine.store.read() as session:
        assert session.get(Incident, incident_id).state == IncidentState.APPROVED
