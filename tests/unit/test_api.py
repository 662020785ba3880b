"""The HTTP edge, in process (workers not started): auth, size limit, 4xx vs 5xx, read routes."""
import json
import sqlite3
import time

import pytest
import yaml
from fastapi.testclient import TestClient

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.people.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from remediator.engine.settings import Settings
from tests.engines import new_engine

pytestmark = [pytest.mark.unit, pytest.mark.store]
SAMPLES = PROJECT_ROOT / "tests" / "fixtures" / "samples"
GROUPED = (SAMPLES / "alertmanager-firing-grouped.json").read_bytes()
AUTH = {"Authorization": "Bearer new-token-0123456789abcdef"}


@pytest.fixture
def engine(make_engine):
    return make_engine(tokens=["old-token-0123456789abcdef", "new-token-0123456789abcdef"], max_body_bytes=64 * 1024)


@pytest.fixture
def client(engine):
    with TestClient(create_app(engine, start_engine=False)) as c:
        yield c


def test_both_rotated_tokens_work_and_nothing_else(client):
    for token, code in [("old-token-0123456789abcdef", 200), ("new-token-0123456789abcdef", 200), ("new-token2", 401), ("", 401)]:
        r = client.post("/webhook/alertmanager", content=GROUPED, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == code, (token, r.text)
    assert client.post("/webhook/alertmanager", content=GROUPED, headers={"Authorization": "Basic b2xkLXRva2Vu"}).status_code == 401
    assert client.get("/incidents").status_code == 401
    assert client.get("/catalog").status_code == 401


def _taken_in(client, engine, response) -> dict:
    """What an acknowledged webhook became, once the ingester took it in."""
    assert response.status_code == 200, response.text
    assert engine.ingester.wait_idle(60)
    return client.get(f"/deliveries/{response.json()['delivery']}", headers=AUTH).json()


def test_an_acknowledged_webhook_is_stored_then_taken_in(client, engine):
    r = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    assert r.json()["status"] == "accepted" and r.json()["alerts"] == 3
    body = _taken_in(client, engine, r)
    assert body["ingested"] and body["new"] == 3 and len(body["escalated"]) == 2
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


def test_a_store_that_cannot_take_it_is_503_so_alertmanager_retries(client, engine, tmp_path, database_url):
    if database_url:                  # PostgreSQL: the database turned read-only (as on a failover, or a full disk)
        with engine.store.engine.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {conn.engine.url.database} SET default_transaction_read_only = on")
            conn.commit()
        engine.store.engine.dispose()
    else:
        db = sqlite3.connect(tmp_path / "remediator-inbox.db")   # the inbox, all an acknowledgement writes
        db.execute("DROP TABLE inbox")   # a broken store, as seen by the engine
        db.commit()
    r = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    assert r.status_code == 503
    assert "store" in r.json()["detail"]


def test_health_says_what_is_wrong(client):
    r = client.get("/healthz")
    assert r.status_code == 503                     # the workers were not started here
    assert r.json()["checks"]["store"] == "ok" and r.json()["checks"]["workers"] == "not running"


def test_a_delivery_that_does_not_exist_is_404_and_one_that_cannot_is_422(client):
    assert client.get("/deliveries/12345", headers=AUTH).status_code == 404
    r = client.get(f"/deliveries/{2**63}", headers=AUTH)   # past a 64-bit integer: found by the fuzz test
    assert r.status_code == 422 and "delivery_id" in r.json()["detail"]


def test_approving_what_is_not_waiting_is_409_and_unknown_is_404(client, engine):
    incident = _taken_in(client, engine, client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH))["incidents"][0]
    _, token = engine.identities.add("alice", "approver")
    alice = {"Authorization": f"Bearer {token}"}
    seen = {"digest": "0" * 64}
    r = client.post(f"/incidents/{incident}/approve", json=seen, headers=alice)
    assert r.status_code == 409 and "not awaiting approval" in r.json()["detail"]
    assert client.post("/incidents/nope/approve", json=seen, headers=alice).status_code == 404
    assert client.get("/incidents/nope", headers=AUTH).status_code == 404
    r = client.post(f"/incidents/{incident}/approve", json={"comment": 5}, headers=alice)
    assert r.status_code == 422 and "comment" in r.json()["detail"]


def test_catalog_and_metrics(client, engine):
    entries = {e["id"]: e for e in client.get("/catalog", headers=AUTH).json()}
    assert entries["restart_service"]["parameters"]["required"] == ["unit", "reason"]
    assert entries["service_status"]["kind"] == "diagnostic"
    client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    assert engine.ingester.wait_idle(60)
    metrics = client.get("/metrics").text
    assert 'remediator_alerts_received_total{outcome="duplicate"} 3.0' in metrics
    # api-server-01 waits for a worker; 02 and 03 are in no inventory: escalated at intake, nothing to run
    assert 'remediator_incidents{state="received"} 1.0' in metrics
    assert 'remediator_incidents{state="escalated"} 2.0' in metrics
    assert 'remediator_incidents_closed_total{state="escalated"} 2.0' in metrics
    assert 'remediator_webhook_requests_total{code="200"} 2.0' in metrics
    assert "remediator_intake_backlog 0.0" in metrics


BAD = yaml.safe_load((PROJECT_ROOT / "tests/fixtures/payloads/bad-requests.yml").read_text())


def _bad_body(case) -> bytes:
    if "nest" in case:
        return b"[" * case["nest"] + b"]" * case["nest"]
    if "body" in case:
        return case["body"].encode()
    body = json.loads(GROUPED)
    if "alerts_of" in case:
        body["alerts"] = body["alerts"][:1] * case["alerts_of"]
    if "label_bytes" in case:
        body["alerts"][0]["labels"]["service"] = "x" * case["label_bytes"]
    return json.dumps(body).encode()


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
def test_bad_requests_are_4xx_saying_what_is_wrong_and_store_nothing(case, tmp_path):
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["new-token-0123456789abcdef"],
                                 max_body_bytes=case.get("max_body_bytes", 1_048_576)))
    with TestClient(create_app(engine, start_engine=False)) as client:
        r = client.post("/webhook/alertmanager", content=_bad_body(case),
                        headers={**AUTH, "content-type": case.get("content_type", "application/json")})
        assert r.status_code == case["status"], r.text[:300]
        assert case["says"] in r.json()["detail"]
        assert client.get("/incidents", headers=AUTH).json() == []


def test_signed_webhooks_when_a_secret_is_set(tmp_path):
    secret = "hmac-secret-for-the-test"
    engine = new_engine(Settings(data_dir=tmp_path, tokens=["new-token-0123456789abcdef"], webhook_hmac_secret=secret,
                                 webhook_hmac_window_s=300))
    now = int(time.time())
    good = {**AUTH, TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: sign(secret, now, GROUPED)}
    with TestClient(create_app(engine, start_engine=False)) as client:
        def post(headers, body=GROUPED):
            return client.post("/webhook/alertmanager", content=body, headers=headers)
        unsigned = post(AUTH)
        assert unsigned.status_code == 401 and "must be signed" in unsigned.json()["detail"]
        assert post({**good, SIGNATURE_HEADER: sign("other", now, GROUPED)}).status_code == 401
        assert "body was changed" in post({**good}, GROUPED + b" ").json()["detail"]
        stale = now - 3600
        r = post({**AUTH, TIMESTAMP_HEADER: str(stale), SIGNATURE_HEADER: sign(secret, stale, GROUPED)})
        assert r.status_code == 401 and "away from now" in r.json()["detail"]
        assert client.get("/incidents", headers=AUTH).json() == []          # nothing refused was stored
        assert post(good).status_code == 200
        replay = post(good)
        assert replay.status_code == 401 and "replay" in replay.json()["detail"]
        no_token = post({k: v for k, v in good.items() if k != "Authorization"})
        assert no_token.status_code == 401                                  # the signature adds to the token


def test_a_killed_ingester_loses_nothing_and_the_next_webhook_brings_it_back(client, engine):
    """The ingester is a process of serve's own: SIGKILL it; what was acknowledged stays in the inbox, /healthz says
    so, the next webhook starts it again and both deliveries are taken in, once."""
    import os
    import signal

    first = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
    assert _taken_in(client, engine, first)["new"] == 3
    child = engine.ingester._child
    assert child is not None and child.pid != os.getpid()   # its own process, not a thread of this one
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert client.get("/healthz").json()["checks"]["ingester"] == "not running"
    other = json.loads(GROUPED)
    other["alerts"] = [{**a, "fingerprint": f"{n:016x}"} for n, a in enumerate(other["alerts"], 1)]
    second = client.post("/webhook/alertmanager", content=json.dumps(other), headers=AUTH)
    body = _taken_in(client, engine, second)
    assert body["ingested"] and body["new"] == 3
    assert engine.ingester._child.pid != child.pid
    assert client.get(f"/deliveries/{first.json()['delivery']}", headers=AUTH).json()["new"] == 3   # not again
    engine.ingester.stop()
    assert engine.inbox.waiting() == {}


def test_an_acknowledgement_never_waits_for_the_ingesters_lock(client, engine, tmp_path, database_url):
    """While the store is locked for writing (as by the ingester's transaction over a storm), a webhook is still
    acknowledged at once: it writes the inbox only (on SQLite a file of its own); it is taken in once the lock goes."""
    import sqlalchemy

    held = sqlalchemy.create_engine(engine.store.url).connect()
    if engine.store.is_sqlite:
        held.exec_driver_sql("BEGIN IMMEDIATE")   # the main file's one write lock
    else:
        held.exec_driver_sql("BEGIN")
        held.exec_driver_sql("LOCK TABLE deliveries, alerts, incidents IN EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        r = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
        assert r.status_code == 200 and time.monotonic() - started < 5   # busy_timeout is 30 s: it did not wait
        assert not client.get(f"/deliveries/{r.json()['delivery']}", headers=AUTH).json()["ingested"]
    finally:
        held.rollback()
        held.close()
    assert _taken_in(client, engine, r)["new"] == 3
