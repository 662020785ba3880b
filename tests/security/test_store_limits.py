"""Finding 13: on PostgreSQL a 65-character `severity` label (alertname: 257) passed validation, the delivery was
acknowledged, then failed to be taken in, and a legitimate alert in the same webhook was lost. Such a label is
now refused at the edge, naming it, before anything is acknowledged; one just at the limit is taken in. And if the
store still refuses one alert after the 2xx, the others of the delivery are taken in without it."""
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.settings import Settings
from remediator.engine.store.tables import AuditEvent
from tests.engines import new_engine

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]
ALERT = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())
AUTH = {"Authorization": "Bearer service-token-0123456789ab", "Content-Type": "application/json"}


def _body(**labels: str) -> bytes:
    body = json.loads(json.dumps(ALERT))
    legit = body["alerts"][0]
    body["alerts"] = [legit, {**legit, "fingerprint": "0123456789abcdef", "labels": {**legit["labels"], **labels}}]
    return json.dumps(body).encode()


@pytest.mark.parametrize("label,limit", [("severity", 64), ("alertname", 256)])
def test_a_label_too_long_for_the_store_is_refused_before_the_2xx(tmp_path, database_url, label, limit):
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, tokens=["service-token-0123456789ab"]))
    with TestClient(create_app(engine, start_engine=False)) as client:
        refused = client.post("/webhook/alertmanager", content=_body(**{label: "x" * (limit + 1)}), headers=AUTH)
        assert refused.status_code == 422
        assert f"label {label}: value of {limit + 1} characters, at most {limit}" in refused.text
        taken = client.post("/webhook/alertmanager", content=_body(**{label: "x" * limit}), headers=AUTH)
        assert taken.status_code == 200
        assert engine.ingester.wait_idle(60)
        delivery = client.get(f"/deliveries/{taken.json()['delivery']}", headers=AUTH).json()
    assert delivery["ingested"] and delivery["new"] == 2


REFUSE_ONE = {   # the store refuses one row: a stand-in for whatever a store may refuse that validation let through
    "sqlite": ["CREATE TRIGGER refuse_one BEFORE INSERT ON alerts WHEN NEW.fingerprint = '0123456789abcdef' "
               "BEGIN SELECT RAISE(ABORT, 'refused by the store'); END"],
    "postgresql": ["CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "IF NEW.fingerprint = '0123456789abcdef' THEN RAISE EXCEPTION 'refused by the store'; END IF; "
                   "RETURN NEW; END $$",
                   "CREATE TRIGGER refuse_one BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION refuse_one()"],
}


def test_one_alert_the_store_refuses_does_not_lose_the_others(tmp_path, database_url):
    """The rest of finding 13: when the store refuses one alert of an acknowledged delivery, the delivery is taken
    in alert by alert: the legitimate alert beside it gets its incident, and the refused one is named in the
    delivery's outcome and the audit (before, the whole delivery was marked failed and both were lost)."""
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, tokens=["service-token-0123456789ab"]))
    with engine.store.write() as session:
        for statement in REFUSE_ONE[session.bind.dialect.name]:
            session.execute(text(statement))
    with TestClient(create_app(engine, start_engine=False)) as client:
        r = client.post("/webhook/alertmanager", content=_body(alertname="DiskFull"), headers=AUTH)
        assert r.status_code == 200
        assert engine.ingester.wait_idle(30)
        delivery = client.get(f"/deliveries/{r.json()['delivery']}", headers=AUTH).json()
        incidents = client.get("/incidents", headers=AUTH).json()
    engine.ingester.stop()
    assert delivery["ingested"] and delivery["new"] == 1, delivery
    assert [f["fingerprint"] for f in delivery["failed"]] == ["0123456789abcdef"]
    assert "refused by the store" in delivery["failed"][0]["error"]
    assert [(i["alertname"], i["host"]) for i in incidents] == [("ServiceDown", "api-server-01")]
    with engine.store.read() as session:
        failed = [e.data for e in session.execute(select(AuditEvent).where(AuditEvent.kind == "delivery.partly_failed")).scalars()]
    assert failed and failed[0]["taken_in"] == 1
