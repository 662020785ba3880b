"""Dependencies (remediator/engine/decide/dependencies.py): a service whose declared dependency is down is not acted
on; the incident names the dependency. The control: with the dependency running, the fix goes ahead."""
import json

import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor, take_in, work_all

pytestmark = pytest.mark.unit
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
WEBAPP_DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [],
               "started": True, "result": "signal", "ran_s": 3600.0, "oom": False}
GATEWAY_DOWN = {**WEBAPP_DOWN, "unit": "api-gateway", "active_state": "inactive", "sub_state": "dead",
                "result": "exit-code", "error_line": "api-gateway: bind: address already in use"}
GATEWAY_UP = {**GATEWAY_DOWN, "active_state": "active", "sub_state": "running", "result": "success", "error_line": ""}
WEBAPP_UP = {**WEBAPP_DOWN, "active_state": "active", "sub_state": "running"}


def _engine(tmp_path, reports):
    inventory = yaml.safe_load((PROJECT_ROOT / "inventory" / "lab.yml").read_text())
    inventory["all"]["vars"]["remediator_depends_on"] = {"webapp": ["api-gateway"]}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    executor = ScriptedExecutor({"service_status": reports}, {"restart_service": CHECK})
    engine = new_engine(Settings(data_dir=tmp_path / "data", verify_interval_s=0, inventory=tmp_path / "inventory.yml"),
                        executor=executor)
    (incident_id,) = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents
    work_all(engine)
    with engine.store.read() as s:
        return s.get(Incident, incident_id), executor


def test_a_service_whose_dependency_is_down_is_not_restarted_and_the_dependency_is_named(tmp_path):
    # the runbook's gate reads webapp (down), then the declared dependency api-gateway (down too)
    inc, executor = _engine(tmp_path, [WEBAPP_DOWN, GATEWAY_DOWN])
    assert inc.state == IncidentState.ESCALATED
    assert inc.reason.startswith("webapp depends on api-gateway on app-server-01 (the inventory's remediator_depends_on)")
    assert "api-gateway is inactive (dead; result exit-code, error_line api-gateway: bind: address already in use)" in inc.reason
    assert "Look at api-gateway first; acting on webapp would not fix it" in inc.reason
    assert executor.calls == [("service_status", "diagnose"), ("service_status", "diagnose")]   # nothing checked or run
    assert inc.evidence["service_status#2"]["params"]["unit"] == "api-gateway"


def test_the_control_with_the_dependency_running_the_service_is_restarted(tmp_path):
    inc, executor = _engine(tmp_path, [WEBAPP_DOWN, GATEWAY_UP, WEBAPP_UP])
    assert inc.state == IncidentState.RESOLVED, inc.reason
    assert ("restart_service", "apply") in executor.calls
