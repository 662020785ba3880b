"""ansible-runner itself crashing mid-run (fault injected: its run() raises): the run is an error with
the reason, the incident ends failed saying so, people are paged, and nothing is left marked running."""
import pytest
from sqlalchemy import select

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.records import ActionProposal
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident, OutboxMessage, Run, utcnow
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.unit, pytest.mark.store]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()


def test_a_crashing_ansible_runner_fails_the_incident_with_the_reason(tmp_path, database_url, monkeypatch):
    import ansible_runner

    def crash(**_kwargs):
        raise OSError("[Errno 12] Cannot allocate memory: 'ansible-playbook'")

    monkeypatch.setattr(ansible_runner, "run", crash)
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, pagerduty_routing_key="R" * 32,
                             pagerduty_url="http://127.0.0.1:9/pagerduty"))
    incident_id = take_in(engine, SAMPLE).incidents[0]
    proposal = ActionProposal(entry="restart_service", params={"unit": "api-gateway", "reason": "down"},
                              hosts=["api-server-01"], rationale="r", planner="runbook", offered=["restart_service"])
    with engine.store.write() as s:      # where the pipeline calls _execute: evidence just read, checked, allowed
        s.get(Incident, incident_id).state = IncidentState.CHECKING
        s.add(Run(incident_id=incident_id, ident="read", entry="service_status", mode="diagnose", hosts=["api-server-01"],
                  params={}, status="successful", finished_at=utcnow()))
    engine.pipeline.steps.execute(incident_id, proposal)

    with engine.store.read() as s:
        inc = s.get(Incident, incident_id)
        runs = s.execute(select(Run).where(Run.incident_id == incident_id)).scalars().all()
        paged = s.execute(select(OutboxMessage).where(OutboxMessage.incident_id == incident_id)).scalars().all()
    assert inc.state == IncidentState.FAILED
    assert "the run error" in inc.reason and "Cannot allocate memory" in inc.reason
    assert [(r.mode, r.status) for r in runs if r.mode != "diagnose"] == [("apply", "error")]   # not left "running"
    assert [m.event for m in paged] == ["failed"]
