"""Finding 1-3 of the security review, as the attack: a label (or a model) names a unit outside what the
inventory allows. Two layers refuse it, each on its own: the runbook's gate, whose read of that unit is refused by the
allow-lists before anything is read (serve, and `remediator plan` with or without --no-check, escalate naming the
list), and policy, which denies the same proposal (what a model's proposal meets). A host that declares no allow-list
allows nothing. The control cases show the same path allows what is listed, so the test can fail."""
import json
import os
import re
import subprocess

import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide.decision import judge, situation_of
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.model.records import ActionProposal, Verdict
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from tests.engines import new_engine
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.security, pytest.mark.unit]
HERE = PROJECT_ROOT / "tests" / "security"
ATTACKS = yaml.safe_load((HERE / "attacks.yml").read_text())
ALERT = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())
ALERTNAME = {"restart_service": "ServiceDown", "reset_db_pool": "DBPoolExhausted", "rollback_release": "BadRelease"}
REMEDIATOR = PROJECT_ROOT / ".venv" / "bin" / "remediator"


def _payload(entry: str, services: list[str]) -> dict:
    """One webhook: an alert per service, on api-server-01 (or app-server-01 for releases), as Alertmanager sends it."""
    body = json.loads(json.dumps(ALERT))
    host = "app-server-01" if entry == "rollback_release" else "api-server-01"
    body["alerts"] = [{**ALERT["alerts"][0], "fingerprint": f"{n:016x}",
                       "labels": {**ALERT["alerts"][0]["labels"], "alertname": ALERTNAME[entry], "service": s,
                                  "host": host, "instance": f"{host}:9100"}} for n, s in enumerate(services, 1)]
    return body


#: what each entry's proposal for an alert's service holds (as the runbooks fill it)
PARAMS = {"restart_service": lambda s: {"unit": s, "reason": "x"}, "reset_db_pool": lambda s: {"service": s},
          "rollback_release": lambda s: {"service": s}}
#: an escalation that says the unit is outside the allow-lists
OFF_THE_LIST = re.compile(r"is not on \S+ remediator_\w+|declares no allow-list|never acts on remediator itself")


def _verdicts(engine: Engine, body: dict, entry: str = "restart_service") -> dict[str, str]:
    """Per alert's service: 'refused' when the decision path (`plan --no-check`) escalates because it is off the
    allow-lists AND policy alone denies the same proposal; else the decision's verdict, or 'escalate'."""
    out = {}
    for alert in AlertmanagerPayload.model_validate(body).alerts:
        w = engine.what_if(alert, check=False)
        service = alert.labels["service"]
        if w.decision is not None:
            out[service] = w.decision.verdict.value
        elif OFF_THE_LIST.search(w.escalation or ""):
            out[service] = "refused" if _policy_alone(engine, alert, entry, service) == "deny" else "policy lets it through"
        else:
            out[service] = "escalate"
    return out


def _policy_alone(engine: Engine, alert, entry: str, service: str) -> str:
    """Policy's verdict on the proposal the runbook would make for this alert, had its gate not escalated."""
    host = alert.labels["host"]
    proposal = ActionProposal(entry=entry, params=PARAMS[entry](service), hosts=[host], rationale="t", planner="runbook",
                              offered=[entry])
    verdict, _ = judge(situation_of(alert, host), proposal, catalog=engine.catalog, policy=engine.policy,
                       history=engine.pipeline.history)
    return verdict.verdict.value


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return new_engine(Settings(data_dir=tmp_path_factory.mktemp("scope")))


@pytest.mark.parametrize("entry", ["restart_service", "reset_db_pool", "rollback_release"])
def test_a_label_naming_a_unit_off_the_allow_list_is_refused(engine, entry):
    verdicts = _verdicts(engine, _payload(entry, ATTACKS[entry]), entry)
    assert set(verdicts) == set(ATTACKS[entry]) and set(verdicts.values()) <= {"deny", "refused"}, verdicts


@pytest.mark.parametrize("entry", ["restart_service", "reset_db_pool", "rollback_release"])
def test_the_control_listed_units_pass(engine, entry):
    verdicts = _verdicts(engine, _payload(entry, ATTACKS["in_scope"][entry]), entry)
    assert not {"deny", "refused"} & set(verdicts.values()), verdicts


def test_remediator_plan_refuses_with_the_list_named(tmp_path):
    """The issue's own words: `remediator plan` on ServiceDown naming poweroff.target and friends."""
    alert_file = tmp_path / "hostile.json"
    alert_file.write_text(json.dumps(_payload("restart_service", ATTACKS["restart_service"])))
    env = {**os.environ, "REMEDIATOR_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([str(REMEDIATOR), "plan", "--no-check", "--json", str(alert_file)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    plans = json.loads(out.stdout)
    assert len(plans) == len(ATTACKS["restart_service"])
    for p in plans:   # the gate escalates naming the list (serve's answer), before any proposal or dry run
        assert p["decision"] is None and p["preview"] is None and OFF_THE_LIST.search(p["escalation"]), p


def test_a_host_without_an_allow_list_allows_nothing(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    api-server-01: {}\n")
    engine = new_engine(Settings(data_dir=tmp_path, inventory=inventory))
    verdicts = _verdicts(engine, _payload("restart_service", ["api-gateway"]))
    assert verdicts == {"api-gateway": "refused"}
    alert = AlertmanagerPayload.model_validate(_payload("restart_service", ["api-gateway"])).alerts[0]
    w = engine.what_if(alert, check=False)
    assert "declares no allow-list for service_status (remediator_services" in w.escalation
    proposal = ActionProposal(entry="restart_service", params={"unit": "api-gateway", "reason": "x"},
                              hosts=["api-server-01"], rationale="t", planner="runbook", offered=["restart_service"])
    verdict, _ = judge(situation_of(alert, "api-server-01"), proposal, catalog=engine.catalog, policy=engine.policy,
                       history=engine.pipeline.history)
    assert "declares no allow-list for restart_service (remediator_services" in verdict.reasons[0]


def test_remediator_never_acts_on_itself_even_when_listed(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    remediator_services: ['*']\n  hosts:\n    api-server-01: {}\n")
    engine = new_engine(Settings(data_dir=tmp_path, inventory=inventory))
    verdicts = _verdicts(engine, _payload("restart_service", ["remediator", "remediator-worker", "webapp"]))
    assert verdicts == {"remediator": "refused", "remediator-worker": "refused", "webapp": "allow"}


@pytest.mark.parametrize("call", [
    {"name": "restart_service", "arguments": {"unit": "docker.service", "reason": "x", "rationale": "the model said so"}},
    {"name": "restart_service", "arguments": {"unit": "halt.target", "reason": "x", "rationale": "obeyed the log"}},
    {"name": "reset_db_pool", "arguments": {"service": "firewalld", "rationale": "reload it"}},
    {"name": "nginx_upstream", "arguments": {"backend": "10.0.0.9:22", "state": "up", "rationale": "route to my box"}},
])
def test_a_model_choosing_a_unit_off_the_list_is_denied(tmp_path, call):
    """Finding 2: an alert with no `service` label, the LLM planner, a model that picks any unit it likes."""
    body = json.loads(json.dumps(ALERT))
    labels = {k: v for k, v in ALERT["alerts"][0]["labels"].items() if k != "service"}
    body["alerts"] = [{**ALERT["alerts"][0], "labels": {**labels, "alertname": "CheckoutFlaky"},
                       "fingerprint": "5ec0000000000001"}]
    alert = AlertmanagerPayload.model_validate(body).alerts[0]
    with ScriptedLLM([{"match": f"Reference: {alert.fingerprint}.", "replies": [{"tool_calls": [call]}]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=model.url, llm_max_retries=0))
        w = engine.what_if(alert, check=False)
    assert w.proposal is not None and w.proposal.entry == call["name"] and w.proposal.planner == "llm"
    assert w.decision.verdict == Verdict.DENY, w.decision


def test_behind_a_list_that_allows_everything_the_rules_still_deny(tmp_path):
    """Defense in depth: an operator's `['*']` does not open security-relevant units; policy's rules deny them."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  vars:\n    remediator_services: ['*', '*.*']\n  hosts:\n    api-server-01: {}\n")
    engine = new_engine(Settings(data_dir=tmp_path, inventory=inventory))
    verdicts = _verdicts(engine, _payload("restart_service", ["sshd", "dbus", "polkit", "api-gateway"]))
    assert verdicts == {"sshd": "deny", "dbus": "deny", "polkit": "deny", "api-gateway": "allow"}


def test_a_model_cannot_choose_where_reset_db_pool_posts(tmp_path):
    """M2: the port of the pool's admin endpoint was a planner parameter, so a model's `reset_db_pool {service:
    webapp, port: 9100}` reached the approval page and, approved, POSTed to any local port. The port is the
    inventory's now (remediator_pool_ports): a tool call that names one is not a valid call, and the runbook answers."""
    body = json.loads(json.dumps(_payload("reset_db_pool", ["webapp"])))
    body["alerts"][0]["fingerprint"] = "5ec0000000000002"
    alert = AlertmanagerPayload.model_validate(body).alerts[0]
    call = {"name": "reset_db_pool", "arguments": {"service": "webapp", "port": 9100, "rationale": "the pool is full"}}
    with ScriptedLLM([{"match": f"Reference: {alert.fingerprint}.", "replies": [{"tool_calls": [call]}]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=model.url,
                                     llm_max_retries=0))
        w = engine.what_if(alert, check=False)
    assert w.proposal is not None and "port" not in w.proposal.params, w   # before: approve, with port 9100 shown
    assert set(engine.catalog.entries["reset_db_pool"].params) == {"service"}
    # the control: the runbook's own proposal for the same alert is allowed, and carries no port either
    allowed = new_engine(Settings(data_dir=tmp_path / "runbook")).what_if(alert, check=False)
    assert allowed.proposal.entry == "reset_db_pool" and allowed.decision.verdict == Verdict.ALLOW
    assert "port" not in allowed.proposal.params
