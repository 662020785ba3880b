"""`demo` and `chaos run` say up front what on the store would hold the drills for a person (an open breaker, earlier
fixes that policy's history rules count), instead of failing drills without saying why (issue 33: README command 1,
then `demo`, then `demo` again)."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide import breaker
from remediator.engine.errors import ConfigError
from remediator.engine.lab.drills import drills_of
from remediator.engine.lab.readiness import check_ready
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor, take_in, work_all

pytestmark = pytest.mark.unit
DOWN = {"unit": "webapp", "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "journal": [], "started": True}
UP = {**DOWN, "active_state": "active", "sub_state": "running", "since": "Thu 2026-11-12 09:14:02 UTC"}
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
CATALOG = load_catalog(PROJECT_ROOT / "playbooks")
DRILLS = drills_of(CATALOG)


def _fix_webapp(engine, minute: int) -> Incident:
    """webapp down on app-server-01 (the restart_service drill's host and unit), restarted and verified."""
    payload = json.loads((FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_text())
    payload["alerts"][0]["startsAt"] = f"2026-11-24T03:{minute:02d}:11Z"
    (incident_id,) = take_in(engine, json.dumps(payload).encode()).incidents
    work_all(engine)
    with engine.store.read() as s:
        return s.get(Incident, incident_id)


def test_earlier_fixes_that_policy_would_count_stop_the_drills_up_front(tmp_path):
    settings = Settings(data_dir=tmp_path, verify_interval_s=0)
    engine = new_engine(settings, executor=ScriptedExecutor({"service_status": [DOWN, UP] * 2},
                                                            {"restart_service": CHECK}))
    check_ready(settings, CATALOG, DRILLS)                       # a fresh store: nothing holds them
    assert _fix_webapp(engine, 2).state == IncidentState.RESOLVED
    check_ready(settings, CATALOG, DRILLS)                       # one earlier fix: the drill still runs by itself
    assert _fix_webapp(engine, 14).state == IncidentState.RESOLVED
    with pytest.raises(ConfigError) as held:                     # two: flapping, a person decides the third
        check_ready(settings, CATALOG, DRILLS)
    said = str(held.value)
    assert "hold 1 drill(s) for a person" in said and "restart_service (restart_service on app-server-01)" in said
    assert "flapping: this fix verified twice within the hour" in said
    assert f"kill $(cat {tmp_path}/serve.pid); REMEDIATOR_DATA_DIR=var/demo remediator demo" in said
    check_ready(settings, CATALOG, [d for d in DRILLS if d[0] != "restart_service"])   # only the drills it holds


def test_an_open_breaker_stops_the_drills_up_front(tmp_path):
    settings = Settings(data_dir=tmp_path)
    engine = new_engine(settings)
    incident_id = take_in(engine, (FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes()).incidents[0]
    with engine.store.write() as s:
        breaker.open_scope(s, "entry:restart_service", "three failed runs in a row", s.get(Incident, incident_id))
    with pytest.raises(ConfigError, match=r"1 circuit breaker scope\(s\) are open .* entry:restart_service "
                                          r"\(three failed runs in a row\)\. Reset each \(remediator breaker reset"):
        check_ready(settings, CATALOG, DRILLS)
