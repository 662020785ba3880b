"""The HTTP edge, in process (workers not started): auth, size limit, 4xx vs 5xx, read routes."""
import sqlite3

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine import PROJECT_ROOT
from engine.service import Engine
from engine.settings import Settings

pytestmark = pytest.mark.unit
SAMPLES = PROJECT_ROOT / "tests" / "fixtures" / "samples"
GROUPED = (SAMPLES / "alertmanager-firing-grouped.json").read_bytes()
AUTH = {"Authorization": "Bearer new-token"}


@pytest.fixture
def engine(tmp_path):
    return Engine(Settings(data_dir=tmp_path, tokens=["old-token", "new-token"], max_body_bytes=64 * 1024))


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine, start_engine=False)) as c:
        yield c


def test_both_rotated_tokens_work_and_nothing_else(client):
    for token, code in [("old-token", 200), ("new-token", 200), ("new-token2", 401), ("", 401)]:
        r = client.post("/webhook/alertmanager", content=GROUPED, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == code, (token, r.text)
    assert client.post("/webhook/alertmanager", content=GROUPED, headers={"Authorization": "Basic b2xkLXRva2Vu"}).status_code == 401
    assert client.get("/incidents").status_code == 401
    assert client.get("/catalog").status_code == 401


def test_accepted_alerts_are_readable_at_once(client):
    r = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    body = r.json()
    assert body["status"] == "accepted" and body["new"] == 3
    listed = client.get("/incidents", headers=AUTH).json()
    assert {i["id"] for i in listed} == set(body["incidents"])
    detail = client.get(f"/incidents/{body['incidents'][0]}", headers=AUTH).json()
    assert detail["state"] == "received" and detail["alerts"][0]["fingerprint"] == "a20ccfc19120ef4f"
    assert [e["kind"] for e in detail["timeline"]][:2] == ["incident.opened", "alert.firing"]


def test_oversized_bodies_are_413_before_parsing(client):
    big = b"{" + b" " * (64 * 1024) + b"}"
    assert client.post("/webhook/alertmanager", content=big, headers=AUTH).status_code == 413

    def chunks():   # no content-length: the limit holds while streaming
        yield b"{"
        for _ in range(100):
            yield b" " * 1024
    r = client.post("/webhook/alertmanager", content=chunks(), headers=AUTH)
    assert r.status_code == 413 and "bytes" in r.json()["detail"]


def test_a_payload_that_is_wrong_is_422_with_the_field(client):
    r = client.post("/webhook/alertmanager", content=GROUPED.replace(b'"version": "4"', b'"version": "5"'), headers=AUTH)
    assert r.status_code == 422 and "version" in r.json()["detail"]


def test_a_store_that_cannot_take_it_is_503_so_alertmanager_retries(client, engine, tmp_path):
    db = sqlite3.connect(tmp_path / "remediator.db")
    db.execute("DROP TABLE alerts")   # a broken store, as seen by the engine
    db.commit()
    r = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    assert r.status_code == 503
    assert "store" in r.json()["detail"]


def test_health_says_what_is_wrong(client):
    r = client.get("/healthz")
    assert r.status_code == 503                     # the workers were not started here
    assert r.json()["checks"]["store"] == "ok" and r.json()["checks"]["workers"] == "not running"


def test_approving_what_is_not_waiting_is_409_and_unknown_is_404(client, engine):
    incident = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH).json()["incidents"][0]
    _, token = engine.identities.add("alice", "approver")
    alice = {"Authorization": f"Bearer {token}"}
    r = client.post(f"/incidents/{incident}/approve", json={}, headers=alice)
    assert r.status_code == 409 and "not awaiting approval" in r.json()["detail"]
    assert client.post("/incidents/nope/approve", json={}, headers=alice).status_code == 404
    assert client.get("/incidents/nope", headers=AUTH).status_code == 404
    r = client.post(f"/incidents/{incident}/approve", json={"comment": 5}, headers=alice)
    assert r.status_code == 422 and "comment" in r.json()["detail"]


def test_catalog_and_metrics(client):
    entries = {e["id"]: e for e in client.get("/catalog", headers=AUTH).json()}
    assert entries["restart_service"]["parameters"]["required"] == ["unit", "reason"]
    assert entries["service_status"]["kind"] == "diagnostic"
    client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    metrics = client.get("/metrics").text
    assert 'remediator_alerts_received_total{outcome="duplicate"} 3.0' in metrics
    assert 'remediator_incidents{state="received"} 3.0' in metrics
    assert 'remediator_webhook_requests_total{code="200"} 2.0' in metrics
