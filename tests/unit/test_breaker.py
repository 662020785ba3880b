"""The circuit breaker: consecutive failed remediations, or too large a share of failed ones, pause automatic runs
of an entry (or of all), people are told, policy's `allow` becomes `approve`, and only an admin resets it."""
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from remediator.api.app import create_app
from remediator.engine.cli.main import app as cli
from remediator.engine.decide import breaker
from remediator.engine.decide.decision import breaker_rule
from remediator.engine.errors import Forbidden
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.model.ids import new_incident_id
from remediator.engine.model.records import PolicyDecision, Verdict
from remediator.engine.model.states import IncidentState
from remediator.engine.store.tables import AuditEvent, Incident, OutboxMessage, Run, utcnow
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.unit, pytest.mark.store]
ALLOW = PolicyDecision(verdict=Verdict.ALLOW, reasons=["safe"], rules=["safe-entries-run-automatically"])
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture
def engine(make_engine):
    return make_engine(tokens=["service-token-0123456789ab"], pagerduty_routing_key=ROUTING_KEY,
                       breaker_entry_failures=3, breaker_global_failures=5)


def remediated(engine, entry: str, outcome: IncidentState, host: str = "app-server-01") -> str:
    """An incident whose real run of `entry` happened, ended in `outcome` the way the pipeline ends it."""
    incident_id = new_incident_id()
    with engine.store.write() as s:
        s.add(Incident(id=incident_id, correlation_key=f"x|{incident_id}", alertname="ServiceDown", host=host,
                       severity="critical", priority=0, labels={}, annotations={},
                       state=IncidentState.EXECUTING if outcome == IncidentState.FAILED else IncidentState.VERIFYING,
                       entry=entry))
        s.flush()
        s.add(Run(incident_id=incident_id, ident=f"{incident_id}-apply", entry=entry, mode="apply", hosts=[host], params={},
                  status="successful", rc=0, started_at=utcnow(), finished_at=utcnow(), duration_s=1.0, artifact_dir="",
                  summary=""))
    engine.pipeline.records.close(incident_id, outcome, "the fix did not verify" if outcome != IncidentState.RESOLVED else "fixed")
    return incident_id


def test_three_failures_of_one_entry_pause_it_and_people_hear(engine):
    for _ in range(2):
        remediated(engine, "restart_service", IncidentState.ESCALATED)
    assert breaker_rule(ALLOW, "restart_service", engine.pipeline.history).verdict == Verdict.ALLOW
    last = remediated(engine, "restart_service", IncidentState.FAILED)

    paused = breaker_rule(ALLOW, "restart_service", engine.pipeline.history)
    assert paused.verdict == Verdict.APPROVE and "circuit-breaker" in paused.rules
    assert "breaker entry:restart_service is open" in paused.reasons[0] and "3 consecutive failed restart_service" in paused.reasons[0]
    assert breaker_rule(ALLOW, "clean_logs", engine.pipeline.history).verdict == Verdict.ALLOW        # only that entry
    deny = PolicyDecision(verdict=Verdict.DENY, reasons=["no"], rules=["r"])
    assert breaker_rule(deny, "restart_service", engine.pipeline.history) == deny                        # never loosens
    with engine.store.read() as s:
        opened = s.execute(select(AuditEvent).where(AuditEvent.kind == "breaker.opened")).scalar_one()
        page = s.execute(select(OutboxMessage).where(OutboxMessage.event == "breaker_open")).scalar_one()
    assert opened.incident_id == last and opened.data["scope"] == "entry:restart_service"
    assert page.channel == "pagerduty" and page.payload["dedup_key"] == "breaker:entry:restart_service"


def test_a_success_between_failures_keeps_it_closed(engine):
    for outcome in (IncidentState.FAILED, IncidentState.FAILED, IncidentState.RESOLVED, IncidentState.FAILED,
                    IncidentState.ESCALATED):
        remediated(engine, "restart_service", outcome)
    assert not any(b.open for b in breaker.status(engine.store))


def test_an_entry_failing_in_more_than_half_its_fleet_wide_runs_becomes_approve_only_everywhere(engine):
    """Failures that alternate with fixes never count as consecutive: the share across the fleet does."""
    hosts = ["app-server-01", "app-server-02", "api-server-01", "db-primary-01"]
    for n, outcome in enumerate([IncidentState.FAILED, IncidentState.RESOLVED] * 3):
        remediated(engine, "restart_service", outcome, host=hosts[n % 4])
    assert not any(b.open for b in breaker.status(engine.store))             # 3 of 6: not more than 50 %
    remediated(engine, "restart_service", IncidentState.ESCALATED, host="api-server-01")
    paused = breaker_rule(ALLOW, "restart_service", engine.pipeline.history)
    assert paused.verdict == Verdict.APPROVE
    assert "4 of the last 7 restart_service remediations across the fleet failed" in paused.reasons[0]
    assert breaker_rule(ALLOW, "clean_logs", engine.pipeline.history).verdict == Verdict.ALLOW


def test_failures_across_entries_pause_everything(engine):
    for entry in ("restart_service", "clean_logs", "reset_db_pool", "scale_out", "clean_logs"):
        remediated(engine, entry, IncidentState.FAILED)
    assert {b.scope for b in breaker.status(engine.store) if b.open} == {"global"}
    assert breaker_rule(ALLOW, "rollback_release", engine.pipeline.history).verdict == Verdict.APPROVE


def test_only_an_admin_resets_and_counting_starts_again(engine):
    for _ in range(3):
        remediated(engine, "restart_service", IncidentState.FAILED)
    alice, _ = engine.identities.add("alice", "approver")
    ada, ada_token = engine.identities.add("ada", "admin")
    with pytest.raises(Forbidden):
        breaker.reset(engine.store, alice, "entry:restart_service")
    with TestClient(create_app(engine, start_engine=False)) as client:
        assert client.get("/breaker",
                        headers={"Authorization": "Bearer service-token-0123456789ab"}).json()[0]["open"] is True
        r = client.post("/breaker/reset", json={"scope": "entry:restart_service"},
                        headers={"Authorization": "Bearer service-token-0123456789ab"})
        assert r.status_code == 403
        r = client.post("/breaker/reset", json={"scope": "entry:restart_service"}, headers={"Authorization": f"Bearer {ada_token}"})
        assert r.status_code == 200 and r.json()["reset_by"] == "ada" and r.json()["open"] is False
        assert client.post("/breaker/reset", json={"scope": "entry:restart_service"},
                           headers={"Authorization": f"Bearer {ada_token}"}).status_code == 404
    assert breaker_rule(ALLOW, "restart_service", engine.pipeline.history).verdict == Verdict.ALLOW
    remediated(engine, "restart_service", IncidentState.FAILED)          # the three before the reset no longer count
    assert not any(b.open for b in breaker.status(engine.store))


def test_cli_shows_and_resets(engine, tmp_path):
    for _ in range(3):
        remediated(engine, "clean_logs", IncidentState.FAILED)
    _, token = engine.identities.add("ada", "admin")
    env = {"REMEDIATOR_DATA_DIR": str(tmp_path), "COLUMNS": "200",
           **({"REMEDIATOR_DATABASE_URL": engine.settings.database_url} if engine.settings.database_url else {})}
    shown = CliRunner().invoke(cli, ["breaker", "status"], env=env)
    assert "entry:clean_logs: OPEN since" in shown.output
    done = CliRunner().invoke(cli, ["breaker", "reset", "entry:clean_logs"], env={**env, "REMEDIATOR_APPROVER_TOKEN": token})
    assert done.exit_code == 0 and "closed by ada" in done.output


def test_the_boundary_learns_per_group_and_alert_and_only_tightens(make_engine, tmp_path, monkeypatch):
    """Five failed or unverified restarts for ServiceDown on the app group's hosts (successes among them) make that
    scope approve-only: another app host now needs a person, an api host does not; `policy status` shows it."""
    engine = make_engine(tokens=["service-token-0123456789ab"], pagerduty_routing_key=ROUTING_KEY,
                         breaker_entry_failures=3, breaker_global_failures=5,
                         breaker_failure_percent=100)     # the entry's share across the fleet: the test above
    learned = breaker.learned_scopes("restart_service", ["app"], "ServiceDown")
    failed, ok = (IncidentState.ESCALATED, IncidentState.FAILED), IncidentState.RESOLVED
    for n, outcome in enumerate([*failed, ok, *failed, ok, failed[0]]):     # never 3 in a row: the entry breaker stays shut
        remediated(engine, "restart_service", outcome, host=("app-server-01", "app-server-02")[n % 2])
    app = breaker_rule(ALLOW, "restart_service", engine.pipeline.history, learned)
    assert app.verdict == Verdict.APPROVE
    assert "learned: 5 failed or unverified restart_service runs for ServiceDown on hosts of group app" in app.reasons[0]
    alert = AlertmanagerPayload.model_validate_json((FIXTURES / "payloads" / "webapp-down-app-server-01.json").read_bytes())
    decided = engine.what_if(alert.alerts[0], check=False)          # the one decision path applies it too
    assert decided.decision.verdict == Verdict.APPROVE and "learned:" in decided.decision.reasons[0]
    api = breaker.learned_scopes("restart_service", ["api"], "ServiceDown")
    assert breaker_rule(ALLOW, "restart_service", engine.pipeline.history, api).verdict == Verdict.ALLOW
    monkeypatch.setenv("REMEDIATOR_DATA_DIR", str(tmp_path))
    if engine.settings.database_url:
        monkeypatch.setenv("REMEDIATOR_DATABASE_URL", engine.settings.database_url)
    shown = CliRunner().invoke(cli, ["policy", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    assert [(r["scope"], r["open"]) for r in json.loads(shown.output)] == [(learned[0], True)]
    assert "approve-only" in CliRunner().invoke(cli, ["policy", "status"]).output
    _, admin = engine.identities.add("ada", "admin")
    breaker.reset(engine.store, engine.identities.authenticate(admin), learned[0])
    assert breaker_rule(ALLOW, "restart_service", engine.pipeline.history, learned).verdict == Verdict.ALLOW
    with engine.store.read() as s:
        kinds = [e.kind for e in s.execute(select(AuditEvent)).scalars()]
    assert "breaker.reset" in kinds
