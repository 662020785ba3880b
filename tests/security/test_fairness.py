"""Finding 12: 200 incidents on one busy host stopped every other host from being claimed (the claim read the
first 200 candidates and skipped held hosts). A flood on one host never starves another."""
from datetime import timedelta

import pytest

from remediator.engine.model.states import IncidentState
from remediator.engine.store.tables import Incident, utcnow

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]


@pytest.fixture
def engine(make_engine):
    return make_engine()


def _add(engine, n: int, host: str, state: IncidentState, priority: int, name: str) -> list[str]:
    start = utcnow()
    ids = [f"{name}-{i}" for i in range(n)]
    with engine.store.write() as s:
        for i, incident_id in enumerate(ids):
            s.add(Incident(id=incident_id, correlation_key=f"{name}|{i}", alertname=name, host=host, severity="critical",
                           priority=priority, state=state, labels={}, annotations={},
                           created_at=start + timedelta(milliseconds=i), updated_at=start))
    return ids


def test_a_flood_on_a_busy_host_does_not_starve_a_free_one(engine):
    _add(engine, 1, "app-server-01", IncidentState.CHECKING, 0, "busy")           # a worker holds app-server-01
    _add(engine, 250, "app-server-01", IncidentState.RECEIVED, 0, "flood")       # 250 critical alerts wait on it
    (lone,) = _add(engine, 1, "app-server-02", IncidentState.RECEIVED, 3, "lone")  # a low one, last, elsewhere
    assert engine.pipeline.claim() == lone


def test_an_approved_run_behind_a_flood_on_its_own_host_is_taken(engine):
    _add(engine, 250, "app-server-02", IncidentState.RECEIVED, 0, "flood")
    (approved,) = _add(engine, 1, "app-server-02", IncidentState.APPROVED, 4, "approved")
    assert engine.pipeline.claim() == approved      # the approved run goes first on its host
    assert engine.pipeline.claim() is None          # and holds the host: the flood waits
