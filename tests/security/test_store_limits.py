"""Finding 13: on PostgreSQL a 65-character `severity` label (alertname: 257) passed validation, the delivery was
acknowledged, then failed to be taken in, and a legitimate alert in the same webhook was lost. Such a label is
now refused at the edge, naming it, before anything is acknowledged; one just at the limit is taken in."""
import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine import PROJECT_ROOT
from engine.service import Engine
from engine.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.unit]
ALERT = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())
AUTH = {"Authorization": "Bearer service-token", "Content-Type": "application/json"}


def _body(**labels: str) -> bytes:
    body = json.loads(json.dumps(ALERT))
    legit = body["alerts"][0]
    body["alerts"] = [legit, {**legit, "fingerprint": "0123456789abcdef", "labels": {**legit["labels"], **labels}}]
    return json.dumps(body).encode()


@pytest.mark.parametrize("label,limit", [("severity", 64), ("alertname", 256)])
def test_a_label_too_long_for_the_store_is_refused_before_the_2xx(tmp_path, database_url, label, limit):
    engine = Engine(Settings(data_dir=tmp_path, database_url=database_url, tokens=["service-token"]))
    with TestClient(create_app(engine, start_engine=False)) as client:
        refused = client.post("/webhook/alertmanager", content=_body(**{label: "x" * (limit + 1)}), headers=AUTH)
        assert refused.status_code == 422
        assert f"label {label}: value of {limit + 1} characters, at most {limit}" in refused.text
        taken = client.post("/webhook/alertmanager", content=_body(**{label: "x" * limit}), headers=AUTH)
        assert taken.status_code == 200
        assert engine.ingester.wait_idle(10)
        delivery = client.get(f"/deliveries/{taken.json()['delivery']}", headers=AUTH).json()
    assert delivery["ingested"] and delivery["new"] == 2
