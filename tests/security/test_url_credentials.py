"""Part of finding 17: a configured URL that carries a user and password (`http://admin:pw@prometheus:9090`) reached
the audit, the incident and the logs through error messages and the LLM transcript. Every path that shows one now
shows `***` instead: the model endpoint, Prometheus, the Alertmanager API, and serve's log."""
import io
import logging

import pytest

from remediator.engine import logs
from remediator.engine.decide.planners import PlanningContext, PlanningSession
from remediator.engine.intake.alertmanager import AlertmanagerAPIError, fetch_group_alerts
from remediator.engine.outbound.prometheus import Prometheus, PrometheusError
from remediator.engine.settings import Settings
from tests.e2e.conftest import free_port
from tests.engines import new_engine

pytestmark = [pytest.mark.security, pytest.mark.unit]
PASSWORD = "pw-SECRET-51c0"


def _nowhere() -> str:
    return f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"      # a closed port: every call fails, saying where


def test_the_llm_transcript_and_its_fallback_reason_hide_the_password(tmp_path):
    engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=f"{_nowhere()}/v1",
                             llm_max_retries=0, llm_timeout_s=2))
    session = PlanningSession()
    choice = engine.planner.plan(PlanningContext(alertname="ServiceDown", labels={"service": "webapp"}, annotations={},
                                                 host="app-server-01", ref="r"), session)
    dumped = session.transcript.model_dump_json() + choice.model_dump_json()
    assert "cannot reach the model at http://***@127.0.0.1" in dumped and PASSWORD not in dumped


def test_prometheus_and_alertmanager_errors_hide_the_password():
    with pytest.raises(PrometheusError) as prom:
        Prometheus(_nowhere(), timeout_s=2).query("up")
    with pytest.raises(AlertmanagerAPIError) as am:
        fetch_group_alerts(_nowhere(), {"alertname": "X"}, "remediator", timeout_s=2)
    for exc in (prom.value, am.value):
        assert PASSWORD not in str(exc) and "***@127.0.0.1" in str(exc)


def test_serves_log_hides_the_password():
    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers)
    root.handlers = [logging.StreamHandler(stream)]
    try:
        logs.configure("INFO")
        logging.getLogger("engine.test").warning("could not reach %s", f"https://bob:{PASSWORD}@prom.example/api")
    finally:
        root.handlers = before
    assert "https://***@prom.example/api" in stream.getvalue() and PASSWORD not in stream.getvalue()
