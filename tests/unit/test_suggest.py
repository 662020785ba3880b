"""`remediator policy suggest`: widening is only ever suggested. A scope that people approved and that verified
five times, never failing, gets a rule diff exempting it and a backtest naming the past incidents it would have
changed; one failure, or too few approvals, and there is no suggestion; nothing is applied."""
import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from remediator.engine import PROJECT_ROOT
from remediator.engine.cli.main import app as cli
from remediator.engine.decide import suggest
from remediator.engine.model.ids import new_incident_id
from remediator.engine.model.records import ActionProposal, PolicyDecision, Verdict
from remediator.engine.model.states import ApprovalState, IncidentState
from remediator.engine.store.tables import Approval, Incident, Run, utcnow

pytestmark = [pytest.mark.unit, pytest.mark.store]
RULE = "risky-entries-need-approval"


@pytest.fixture
def engine(make_engine):
    return make_engine()


def rolled_back(engine, state: IncidentState, host: str = "app-server-01") -> str:
    """A BadRelease rollback a person approved, that ended in `state` after its real run."""
    incident_id = new_incident_id()
    proposal = ActionProposal(entry="rollback_release", params={"service": "webapp"}, hosts=[host], rationale="r",
                              planner="runbook", offered=["rollback_release"])
    with engine.store.write() as s:
        s.add(Incident(id=incident_id, correlation_key=f"k|{incident_id}", alertname="BadRelease", host=host,
                       severity="critical", priority=0, labels={"alertname": "BadRelease", "service": "webapp"},
                       annotations={}, state=state, entry="rollback_release", proposal=proposal, closed_at=utcnow(),
                       decision=PolicyDecision(verdict=Verdict.APPROVE, reasons=["risky"], rules=[RULE])))
        s.flush()
        s.add(Run(incident_id=incident_id, ident="a", entry="rollback_release", mode="apply", hosts=[host], params={},
                  status="successful"))
        s.add(Approval(id=new_incident_id(), incident_id=incident_id, preview_digest="0" * 64, expires_at=utcnow(),
                       state=ApprovalState.APPROVED, decided_by="alice"))
    return incident_id


def _suggest(engine, group: str = "app"):
    """The suggestions for one inventory group's scope (the lab's hosts are in a region group too)."""
    found = suggest.suggest(engine.store, PROJECT_ROOT / "policies", engine.catalog, engine.inventory, 5)
    return [f for f in found if f.scope.split("|")[1] == group]


def test_five_approved_and_verified_earn_a_suggestion_with_its_backtest(engine):
    ids = [rolled_back(engine, IncidentState.RESOLVED) for _ in range(5)]
    (found,) = _suggest(engine)
    assert found.scope == "rollback_release|app|BadRelease" and found.rule == RULE and found.approved_and_verified == 5
    assert '!(entry.id == "rollback_release" && "app" in host_groups && labels.alertname == "BadRelease")' in found.diff
    assert sorted(found.changed) == sorted(ids)                        # each would have run without a person
    assert (PROJECT_ROOT / "policies" / "default.yml").read_text().count("!(entry.id") == 0   # nothing applied


def test_one_failure_or_too_few_and_there_is_none(engine):
    for _ in range(4):
        rolled_back(engine, IncidentState.RESOLVED)
    assert _suggest(engine) == []                                      # four are too few
    rolled_back(engine, IncidentState.RESOLVED)
    rolled_back(engine, IncidentState.FAILED, host="app-server-02")    # one failure in the group
    assert _suggest(engine) == []
    assert len(_suggest(engine, "region_east")) == 1                   # app-server-01's region had none


def test_the_cli_prints_the_diff_and_the_backtest(engine, tmp_path, monkeypatch):
    for _ in range(5):
        rolled_back(engine, IncidentState.RESOLVED)
    monkeypatch.setenv("REMEDIATOR_DATA_DIR", str(tmp_path))
    if engine.settings.database_url:
        monkeypatch.setenv("REMEDIATOR_DATABASE_URL", engine.settings.database_url)
    out = CliRunner().invoke(cli, ["policy", "suggest", "--json"])
    assert out.exit_code == 0, out.output
    (found,) = [f for f in json.loads(out.output) if f["scope"].split("|")[1] == "app"]
    assert found["scope"] == "rollback_release|app|BadRelease" and len(found["changed"]) == 5
    with engine.store.read() as s:
        assert len(s.execute(select(Incident)).scalars().all()) == 5     # reading only
