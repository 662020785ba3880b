"""Second review, N1 and N3: what an alert says must not decide what runs (docs/security.md, "What alert content
decides").

N1: `service=worker@9999` made restart_service *start* a new instance of a template with no person (systemd loads any
instance; one that never ran is "inactive", so the ServiceDown gate said act), and each new name was a new budget
for the rate limit. N3: the alert's own `remediator_planner: llm` label sent it to the model, whose choice for a
novel alert then ran with no evidence read and no second opinion; a new spelling of the alertname escaped the
learned scopes. Each attack has its control beside it."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide import breaker
from remediator.engine.decide.decision import StoreHistory
from remediator.engine.errors import ConfigError
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.settings import Settings, load_settings
from remediator.engine.store.tables import BreakerRow, utcnow
from tests.conftest import FIXTURES
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.security, pytest.mark.unit]
BASE = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())
CHECK = json.loads((FIXTURES / "events" / "restart_service-check.json").read_text())
# service_status of a template's instance that was only loaded by asking about it, and of one that ran and stopped
NEVER = {"unit": "worker@9999.service", "load_state": "loaded", "active_state": "inactive", "sub_state": "dead",
         "journal": [], "started": False}
STOPPED = {**NEVER, "unit": "worker@1.service", "started": True}
RUNNING = {**STOPPED, "unit": "webapp.service", "active_state": "active", "sub_state": "running"}
DOWN = {**RUNNING, "active_state": "failed", "sub_state": "failed"}


def _alert(alertname: str = "ServiceDown", **labels: str):
    body = json.loads(json.dumps(BASE))
    first = body["alerts"][0]
    body["alerts"] = [{**first, "fingerprint": f"{abs(hash(alertname + str(labels))) % 16**12:012x}",
                       "labels": {**first["labels"], "alertname": alertname, **labels}}]
    return AlertmanagerPayload.model_validate(body).alerts[0]


def _engine(tmp_path, reports, **settings):
    executor = ScriptedExecutor({"service_status": reports}, {"restart_service": CHECK})
    return new_engine(Settings(data_dir=tmp_path, **settings), executor=executor), executor


# ---- N1: a label never starts a unit (the rate limit per template: test_rate_limit.py) ----------------------------

def test_a_label_naming_a_new_instance_of_a_template_starts_nothing(tmp_path):
    engine, executor = _engine(tmp_path, [NEVER])
    w = engine.what_if(_alert(service="worker@9999"))
    assert w.proposal is None and w.escalation, w
    assert "never started since the host booted, so it is not down" in w.escalation
    assert "started since boot: no" in w.escalation
    assert executor.calls == [("service_status", "diagnose")]          # read, nothing checked or run


def test_the_control_an_instance_that_ran_and_stopped_is_restarted(tmp_path):
    engine, executor = _engine(tmp_path, [STOPPED])
    w = engine.what_if(_alert(service="worker@1"))
    assert w.proposal is not None and w.proposal.params["unit"] == "worker@1", w
    assert w.decision is not None and w.decision.verdict.value == "allow"
    assert ("restart_service", "check") in executor.calls


# ---- N3: only the operator sends an alert to the model -----------------------------------------------------------

OBEY = {"tool_calls": [{"name": "restart_service", "arguments": {"unit": "webapp", "reason": "x", "rationale": "asked"}}]}
CLEAN = {"tool_calls": [{"name": "clean_logs", "arguments": {"paths": ["/var/log/webapp"], "rationale": "asked"}}]}


def test_an_alert_labelled_for_the_model_is_planned_exactly_as_without_the_label(tmp_path):
    with ScriptedLLM([{"match": "", "replies": [OBEY]}]) as model:
        engine, _ = _engine(tmp_path, [DOWN], planner="llm", llm_base_url=model.url, llm_max_retries=0)
        for name in ("ServiceDown", "WebappFlaky"):
            plain = engine.what_if(_alert(name, service="webapp"), check=False)
            labelled = engine.what_if(_alert(name, service="webapp", remediator_planner="llm"), check=False)
            assert model.requests == [], f"{name}: the label reached the model"
            assert (labelled.proposal, labelled.escalation, labelled.decision) == (plain.proposal, plain.escalation,
                                                                                   plain.decision)
    assert labelled.escalation and "no runbook matches" in labelled.escalation


def test_the_opt_in_label_setting_is_refused_with_what_to_do_instead(tmp_path, monkeypatch):
    config = tmp_path / "remediator.yml"
    config.write_text("llm_opt_in_label: remediator_planner\n")
    monkeypatch.setenv("REMEDIATOR_CONFIG", str(config))
    with pytest.raises(ConfigError, match="llm_opt_in_label: removed.*llm_alerts"):
        load_settings(data_dir=tmp_path)


@pytest.mark.parametrize("reports, verdict", [([RUNNING], "approve"), ([DOWN], "allow")], ids=["healthy", "down"])
def test_a_models_restart_for_a_novel_alert_runs_alone_only_on_its_entrys_evidence(tmp_path, reports, verdict):
    with ScriptedLLM([{"match": "", "replies": [OBEY]}]) as model:
        engine, executor = _engine(tmp_path, reports, planner="llm", llm_alerts=["WebappFlaky"], llm_base_url=model.url,
                                   llm_max_retries=0)
        w = engine.what_if(_alert("WebappFlaky", service="webapp"))
    assert w.proposal is not None and w.proposal.planner == "llm" and w.proposal.entry == "restart_service", w
    assert w.decision is not None and w.decision.verdict.value == verdict, w.decision
    if verdict == "approve":      # the attack: a healthy unit; a person decides, told what was read
        assert "no runbook answers" in w.proposal.needs_person and "active_state=active" in w.proposal.needs_person
    else:                         # the control: the unit is down, the entry's own gate reads it
        assert not w.proposal.needs_person and "the evidence shows it" in w.proposal.rationale
    assert ("service_status", "diagnose") in executor.calls


def test_a_models_choice_of_an_entry_without_a_gate_waits_for_a_person(tmp_path):
    with ScriptedLLM([{"match": "", "replies": [CLEAN]}]) as model:
        engine, _ = _engine(tmp_path, [DOWN], planner="llm", llm_alerts=["*Flaky"], llm_base_url=model.url,
                            llm_max_retries=0)
        w = engine.what_if(_alert("DiskFlaky"), check=False)
    assert w.proposal is not None and w.proposal.entry == "clean_logs", w
    assert w.decision is not None and w.decision.verdict.value == "approve"
    assert "clean_logs declares no evidence gate" in w.proposal.needs_person


@pytest.mark.parametrize("spelled", ["WebappFlaky", "webappflaky", "WEBAPPFLAKY"])
def test_a_learned_scope_holds_whatever_the_alertname_is_spelled(make_engine, spelled):
    engine = make_engine()
    with engine.store.write() as s:   # written as before names were casefolded: in the first alert's spelling
        s.add(BreakerRow(scope="learned:restart_service|api|WebappFlaky", open=True, opened_at=utcnow(),
                         reason="learned: 5 failed runs"))
    history = StoreHistory(engine.store)
    assert history.open_breaker("restart_service", breaker.learned_scopes("restart_service", ["api"], spelled))
    assert history.open_breaker("restart_service", breaker.learned_scopes("restart_service", ["api"], "Other")) is None
