"""Secrets (service tokens, an approver's token, the Slack webhook URL, the PagerDuty routing key,
the LLM API key) never reach the store, the audit trail, API answers, pages, error messages or logs:
exercise every path that handles one, then grep for them."""
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT, logs
from remediator.engine.decide.planners import PlanningContext, PlanningSession
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import AuditEvent, OutboxMessage
from tests.engines import new_engine
from tests.fakes import take_in
from tests.scripted_llm import ScriptedLLM
from tests.standins import Receivers

pytestmark = pytest.mark.unit
SERVICE = "svc-SECRET-token-0d41c7-5e8a9b"
SLACK_PATH = "T0001/B0001/SLACKSECRETx9f8e7d6c5b4"
ROUTING_KEY = "PDSECRETab0123456789abcdefABCDEF"
LLM_KEY = "sk-LLMSECRET-7f3e2d1c0b9a"
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()


def test_no_secret_is_stored_shown_or_logged(tmp_path, caplog):
    logs.quiet_clients()                      # as `remediator serve` configures logging
    caplog.set_level(logging.DEBUG)
    with Receivers() as receivers, ScriptedLLM([{"match": "", "replies": [{"status": 500}]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, tokens=[SERVICE], planner="llm", llm_alerts=["*"], llm_base_url=model.url,
                                 llm_api_key=LLM_KEY, llm_max_retries=0,
                                 slack_webhook_url=f"{receivers.url}/slack/{SLACK_PATH}",
                                 pagerduty_url=f"{receivers.url}/pagerduty", pagerduty_routing_key=ROUTING_KEY))
        _, approver = engine.identities.add("alice", "approver")
        secrets = [SERVICE, SLACK_PATH, ROUTING_KEY, LLM_KEY, approver, approver.split("_", 2)[2]]

        incident_id = take_in(engine, SAMPLE).incidents[0]
        session = PlanningSession()
        engine.planner.plan(PlanningContext(alertname="ServiceDown", labels={"service": "api-gateway"}, annotations={},
                                            host="api-server-01", ref=incident_id), session)     # the endpoint fails: fallback
        engine.pipeline.records.transcript(incident_id, session.transcript)
        receivers.fail_next["slack"] = 1                                                          # one failed delivery, kept
        engine.pipeline.records.close(incident_id, IncidentState.ESCALATED, "a person must look")
        engine.notifier.deliver_due()
        engine.notifier.client.close()
        assert receivers.received["pagerduty"] and receivers.received["pagerduty"][0]["routing_key"] == ROUTING_KEY
        with engine.store.read() as s:   # each delivered notification counted once (the retried one too)
            delivered = dict(s.execute(select(OutboxMessage.channel, func.count()).where(OutboxMessage.sent_at.is_not(None))
                                       .group_by(OutboxMessage.channel)).all())
        assert delivered["slack"] >= 1 and delivered["pagerduty"] >= 1
        for channel, n in delivered.items():
            assert engine.metrics.registry.get_sample_value("remediator_notifications_sent_total", {"channel": channel}) == n

        with TestClient(create_app(engine, start_engine=False)) as client:
            answers = [client.get(path, headers={"Authorization": f"Bearer {token}"}).text
                       for token in (SERVICE, approver)
                       for path in ("/incidents", f"/incidents/{incident_id}", "/approvals?state=all", "/metrics",
                                    "/catalog", "/openapi.json", "/breaker")]
            answers.append(client.get("/incidents", headers={"Authorization": f"Bearer {SERVICE}x"}).text)
            client.headers["Origin"] = "http://testserver"      # as a browser on the login page sends it
            csrf = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/ui/login").text).group(1)
            answers.append(client.post("/ui/login", data={"token": approver + "x", "login_csrf": csrf}).text)
            csrf = re.search(r'name="login_csrf" value="([^"]+)"', answers[-1]).group(1)
            client.post("/ui/login", data={"token": approver, "login_csrf": csrf})
            answers.append(client.get(f"/ui/incidents/{incident_id}").text)
            assert 'id="incident-state"' in answers[-1], "the login did not work: the page was not shown"

    stored = b"".join(p.read_bytes() for p in tmp_path.glob("remediator.db*"))
    assert stored, "the store's files were not found"
    with engine.store.read() as s:
        audit = json.dumps([(e.kind, e.data) for e in s.execute(select(AuditEvent)).scalars()], default=str)
    for secret in secrets:
        assert secret.encode() not in stored, f"{secret[:8]}… is in the store"
        assert secret not in audit
        assert not any(secret in a for a in answers), f"{secret[:8]}… is in an API answer or page"
        assert secret not in caplog.text, f"{secret[:8]}… is in the log"
