"""Level 2 reports (remediator/engine/decide/reports.py): the diagnosis is the engine's, its proposal waits for a person whatever
policy allows, what could not be read is named and never acted on, and a report runbook that could mislead fails at
load. The alerts and evidence are the eval cases' recordings (evals/cases/high-latency-pool and friends)."""
import importlib.util
import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.decide.configured import make_planner
from remediator.engine.decide.decision import PastRun, RecordedHistory, StoreHistory, decide, situation_of
from remediator.engine.decide.evidence import Evidence
from remediator.engine.decide.planners import load_runbooks
from remediator.engine.decide.policy import load_policy
from remediator.engine.decide.reports import promql
from remediator.engine.errors import ConfigError
from remediator.engine.evals.cases import load_cases, run_case
from remediator.engine.model.states import IncidentState, RunMode
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident, OutboxMessage, Run
from tests.engines import new_engine
from tests.fakes import FixedClock, RecordedExecutor, seed_history, take_in, work_all
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.unit, pytest.mark.store]
CASES = {c.name: c for c in load_cases(PROJECT_ROOT / "evals" / "cases")}
TOKEN = {"Authorization": "Bearer service-token-0123456789ab"}


def _payload(name: str) -> bytes:
    return (PROJECT_ROOT / "evals" / "cases" / name / "alert.json").read_bytes()


@pytest.fixture
def make_engine(tmp_path, database_url):
    """An engine serving a case's recorded diagnostics and metrics (on SQLite, or PostgreSQL in its tier)."""
    def make(name: str, *, recorded_metrics: bool = True, **settings) -> Engine:
        case = CASES[name]
        return new_engine(Settings(data_dir=tmp_path, database_url=database_url, tokens=["service-token-0123456789ab"],
                               slack_webhook_url="http://127.0.0.1:9/slack", **settings),
                      executor=case.executor(checks=True), clock=FixedClock(case.at),
                      query=case.query if recorded_metrics else None)
    return make


def _allow_everything(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "open.yml").write_text(yaml.safe_dump({"rules": [
        {"name": "anything-goes", "verdict": "allow", "reason": "an operator who allows every entry automatically"}]}))
    return policies


def test_a_level2_proposal_waits_for_a_person_whatever_policy_allows(make_engine, tmp_path):
    engine = make_engine("high-latency-pool", policies_dir=_allow_everything(tmp_path))
    (incident_id,) = take_in(engine, _payload("high-latency-pool")).incidents
    work_all(engine)
    with engine.store.read() as s:
        inc = s.get(Incident, incident_id)
        modes = [r.mode for r in s.query(Run).filter_by(incident_id=incident_id)]
        slack = [m.payload for m in s.query(OutboxMessage).filter_by(incident_id=incident_id, channel="slack")]
    assert inc.state == IncidentState.AWAITING_APPROVAL
    assert inc.proposal.entry == "reset_db_pool" and "needs-person" in inc.decision.rules
    assert RunMode.APPLY not in modes and RunMode.CHECK in modes       # the dry run is there to decide on
    assert "database connection" in inc.report.cause
    assert {f.label: f.value for f in inc.report.pointing}["pool in use (share)"] == "0.95"
    asked = next(p for p in slack if p["event"] == "awaiting_approval")
    assert any("Diagnosis (latency)" in line for line in asked["report"]), asked


def test_the_report_is_in_the_api_and_the_escalation_message(make_engine, tmp_path):
    engine = make_engine("high-error-rate-upstream")
    (incident_id,) = take_in(engine, _payload("high-error-rate-upstream")).incidents
    work_all(engine)
    with TestClient(create_app(engine, start_engine=False)) as client:
        detail = client.get(f"/incidents/{incident_id}", headers=TOKEN).json()
    assert detail["state"] == "escalated" and detail["proposal"] is None
    report = detail["report"]
    assert report["cause"].startswith("a dependency fails") and "upstream the message names" in report["look_first"]
    pointing = {f["label"]: f["value"] for f in report["pointing"]}
    assert "payments-api refused" in pointing["message"] and pointing["unit"] == "webapp.service"
    figures = {f["label"]: f["value"] for f in report["figures"]}
    assert figures["failing share by route"] == "/api/orders 1; /api/catalog 0"
    with engine.store.read() as s:
        sent = [m.payload for m in s.query(OutboxMessage).filter_by(incident_id=incident_id, channel="slack")]
    assert any("look first at" in line for p in sent for line in p["report"]), sent


@pytest.mark.parametrize("backend", ["127.0.0.1:8090", "10.0.0.9:22", "127.0.0.1:8080 down; server 10.0.0.9:80"])
def test_a_label_cannot_point_the_load_balancer_change_at_another_backend(make_engine, tmp_path, backend):
    """The attack: the failing backend is 8080, the alert's `backend` label names another. The cause needs the
    named backend to be the one failing, so nothing is proposed for it; an off-list one would be denied anyway."""
    case = CASES["high-error-rate-backend"]
    alert = case.alert.model_copy(update={"labels": {**case.alert.labels, "backend": backend}})
    w = make_engine("high-error-rate-backend").what_if(alert, check=True)
    assert w.proposal is None and w.report is not None and not w.report.cause.startswith("one backend"), w


def test_the_failing_backend_is_proposed_out_of_rotation_with_its_diff_for_a_person(make_engine, tmp_path):
    case = CASES["high-error-rate-backend"]
    w = make_engine("high-error-rate-backend").what_if(case.alert, check=True)
    assert w.proposal.entry == "nginx_upstream" and w.proposal.params["backend"] == "127.0.0.1:8080"
    assert w.decision.verdict.value == "approve" and w.report.cause.startswith("one backend behind the load balancer")
    assert {f.label: f.value for f in w.report.pointing}["backends (address, health)"] == "127.0.0.1:8080 500; 127.0.0.1:8090 200"
    backends = {f.label: f.value for f in w.report.figures}["load balancer backends"]
    assert "address=127.0.0.1:8080, weight=1, down=no, health_status=500, healthy=no" in backends


def test_what_could_not_be_read_is_named_and_nothing_is_proposed(make_engine, tmp_path):
    """No Prometheus: the pool's share is unknown, so the pool is not blamed and nothing is reset."""
    engine = make_engine("high-latency-pool", recorded_metrics=False)
    w = engine.what_if(CASES["high-latency-pool"].alert, check=True)
    assert w.proposal is None and w.escalation is not None
    assert w.report is not None and "metric pool_in_use: no Prometheus configured" in w.report.unread
    assert w.report.cause == "the evidence shows no cause this runbook knows"
    assert "slowest route's dependencies" in w.report.look_first


def _journal_read_from(case, history) -> tuple[int, str]:
    """Decide the case with this history: where journal_errors was asked to read from, and the cause named."""
    settings = Settings(data_dir=Path("/nonexistent"))
    catalog, inventory = load_catalog(settings.playbooks_dir), load_inventory(settings.inventory)
    planner, policy = make_planner(settings, catalog), load_policy(settings.policies_dir, catalog, inventory)
    executor = case.executor()
    evidence = Evidence(executor, catalog, "app-server-01", "t", 30, inventory=inventory)
    decided = decide(situation_of(case.alert, "app-server-01"), catalog=catalog, planner=planner, policy=policy,
                     history=history, clock=lambda: case.at, evidence=evidence, query=case.query)
    (since,) = [p["since"] for entry, p in executor.asked if entry == "journal_errors"]
    return since, decided.report.cause


def _fix(minutes_ago: float, *, verified: bool = True, host: str = "app-server-01") -> PastRun:
    return PastRun("rollback_release", [host], {"service": "webapp"},
                   CASES["high-error-rate-after-a-fix"].at - timedelta(minutes=minutes_ago), verified=verified)


@pytest.mark.parametrize("runs, back_s", [
    ([], 600),                                               # no fix before: ten minutes before the alert began
    ([_fix(5)], 300),                                        # a verified fix five minutes before: from the fix
    ([_fix(5, verified=False)], 600),                        # a fix that did not hold does not end the fault
    ([_fix(5, host="app-server-02")], 600),                  # another host's fix says nothing about this one
    ([_fix(30)], 600),                                       # a fix before the window changes nothing
])
def test_the_journal_is_read_from_the_alert_or_the_last_verified_fix(runs, back_s):
    """The operator's trial, point 1: a fixed ten-minute window let an already-fixed release's errors outrank the
    current fault. The report reads from ten minutes before the alert began, or from the last verified fix."""
    case = CASES["high-error-rate-after-a-fix"]
    since, _ = _journal_read_from(case, RecordedHistory(runs=runs))
    assert since == int(case.alert.startsAt.timestamp()) - back_s


def _with_groups(case, groups):
    journal = {**case.diagnostics["journal_errors"], "groups": groups}
    return case.model_copy(update={"diagnostics": {**case.diagnostics, "journal_errors": journal}})


def test_causes_match_over_every_error_group_not_only_the_largest():
    """The fixed release's crash lines are still the two largest groups; the upstream that refuses is third. The
    cause is the upstream (a restart or a rollback would not help)."""
    case = CASES["high-error-rate-after-a-fix"]
    groups = case.diagnostics["journal_errors"]["groups"]
    assert _journal_read_from(case, case.history)[1].startswith("a dependency fails")
    assert _journal_read_from(_with_groups(case, groups[:2]), case.history)[1] == "the service logs errors of its own"
    # sshd's lines alone: another unit's, never the service's own
    cause = _journal_read_from(_with_groups(case, groups[3:]), case.history)[1]
    assert cause.startswith("another unit on the host logs errors"), cause


def _journal_groups():
    path = PROJECT_ROOT / "playbooks" / "roles" / "journal_errors" / "library" / "journal_groups.py"
    spec = importlib.util.spec_from_file_location("journal_groups", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_remediators_own_logins_are_found_by_their_sshd_process():
    """sshd's `Accepted` line names the user; that process's later lines (pam_env's) are remediator's own noise. A
    session of another user, or a line that only mentions the user, is not."""
    entries = [
        {"_PID": "265", "MESSAGE": "Accepted publickey for remediator from 10.88.0.1 port 58936 ssh2: ED25519 SHA256:x"},
        {"_PID": "265", "MESSAGE": "pam_env(sshd:session): Unable to open env file: /etc/default/locale"},
        {"_PID": "301", "MESSAGE": "Accepted password for alice from 10.0.0.5 port 40000 ssh2"},
        {"_PID": "302", "MESSAGE": "Invalid user remediator from 10.0.0.6"},
        {"_PID": "303", "MESSAGE": "Accepted publickey for remediator2 from 10.0.0.7 port 1 ssh2"},
        {"_PID": "304", "MESSAGE": [1, 2]},
    ]
    assert _journal_groups().own_sessions(entries, "remediator") == {"265"}

NARRATIVE = "The pool is 95% used, so requests queue for a connection. Check what holds the connections first."


@pytest.mark.parametrize("reply, narrative", [({"content": NARRATIVE}, NARRATIVE), ({"status": 500}, "")])
def test_with_the_llm_planner_the_model_writes_only_the_words(make_engine, reply, narrative):
    """The numbers, the cause and the proposal stay the runbook's; the model sees the report fenced, gets no tools,
    and a failing endpoint leaves the report without words (nothing else changes)."""
    case = CASES["high-latency-pool"]
    with ScriptedLLM([{"match": "", "replies": [reply]}]) as model:
        engine = make_engine("high-latency-pool", planner="llm", llm_alerts=["*"], llm_base_url=model.url,
                             llm_max_retries=0)
        w = engine.what_if(case.alert, check=True)
    assert w.proposal.entry == "reset_db_pool" and w.proposal.planner == "runbook" and w.decision.verdict.value == "approve"
    assert w.report.cause.startswith("requests wait for a database connection") and w.report.narrative == narrative
    (request,) = model.requests
    assert "tools" not in request
    assert "<<DATA" in request["messages"][0]["content"] and '"pool in use (share)"' in request["messages"][0]["content"]
    assert w.transcript.outcome == ("narrative" if narrative else "fallback")


def test_the_eval_scores_the_cause(tmp_path):
    """The cause is part of being right: the right action for the wrong reason is scored wrong."""
    settings = Settings(data_dir=tmp_path)
    catalog, inventory = load_catalog(settings.playbooks_dir), load_inventory(settings.inventory)
    planner, policy = make_planner(settings, catalog), load_policy(settings.policies_dir, catalog, inventory)
    case = CASES["high-latency-cpu"]
    assert run_case(case, planner, policy, catalog, inventory, settings).right
    wrong = case.model_copy(update={"expected": case.expected.model_copy(update={"cause": "a leak"})})
    result = run_case(wrong, planner, policy, catalog, inventory, settings)
    assert not result.right_cause and "CPU is saturated" in result.cause


def test_promql_takes_the_host_as_a_quoted_string_only():
    hostile = 'web"} or vector(1) or up{a="\\'
    assert promql('up{host="${host}"}', hostile) == 'up{host="web\\"} or vector(1) or up{a=\\"\\\\"}'


BASE = {"name": "l2", "match": {"alertname": "X"},
        "report": {"kind": "k", "unexplained": "look", "causes": [{"when": "true", "cause": "c", "look_first": "here"}]}}


@pytest.mark.parametrize("change, message", [
    ({"causes": [{"when": "true", "cause": "c", "look_first": "x", "propose": {"entry": "restart_service"}}]},
     "give propose or look_first, not both"),
    ({"causes": [{"when": "true", "cause": "c"}]}, "give propose (a catalog action) or look_first"),
    ({"causes": [{"when": "true", "cause": "c", "propose": {"entry": "service_status"}}]}, "is not a remediation"),
    ({"evidence": {"metrics": {"entry": "top_processes"}}}, "must be an identifier other than"),
    ({"evidence": {"procs": {"entry": "restart_service"}}}, "is not a diagnostic"),
    ({"metrics": {"m": 'up{service="${labels.service}"}'}}, "only ${host} may be filled into PromQL"),
    ({"figures": {"f": "procs.("}}, "bad CEL"),
])
def test_a_report_runbook_that_could_mislead_fails_at_load(tmp_path, change, message):
    book = json.loads(json.dumps(BASE))
    book["report"].update(change)
    (tmp_path / "r.yml").write_text(yaml.safe_dump({"runbooks": [book]}))
    with pytest.raises(ConfigError, match="runbook l2") as exc:
        load_runbooks(tmp_path, load_catalog(PROJECT_ROOT / "playbooks"))
    assert message in str(exc.value)


def test_the_store_knows_the_last_verified_fix_on_a_host(tmp_path, database_url):
    """StoreHistory (serve's) answers as the eval's recorded history does: resolved incidents' real runs only."""
    case = CASES["high-error-rate-after-a-fix"]
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url), executor=RecordedExecutor({}))
    runs = [_fix(40), _fix(7), _fix(3, verified=False), _fix(2, host="app-server-02")]
    seed_history(engine.store, RecordedHistory(runs=runs))
    store, recorded = StoreHistory(engine.store), RecordedHistory(runs=runs)
    for since_min in (60, 20, 6):
        since = case.at - timedelta(minutes=since_min)
        assert store.last_verified("app-server-01", since) == recorded.last_verified("app-server-01", since)
    assert store.last_verified("app-server-01", case.at - timedelta(minutes=20)) == case.at - timedelta(minutes=7)
    assert store.last_verified("app-server-01", case.at - timedelta(minutes=6)) is None
    assert store.last_verified("db-primary-01", case.at - timedelta(hours=2)) is None
