"""Part of finding 17: diagnostics read any unit's journal (a model could pull sshd's or the database's log into its
context and the incident) and looked at any directory. They are bounded like remediations now: service_status
reads only units the host's allow-list names, disk_usage only below its listed directories (and the role resolves
symlinks on the host: tests/security/test_clean_logs.py). The same bound holds for serve, `plan` and `eval`."""
import json

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.alerts import AlertmanagerPayload
from remediator.engine.settings import Settings
from tests.engines import new_engine
from tests.fakes import ScriptedExecutor
from tests.scripted_llm import ScriptedLLM

pytestmark = [pytest.mark.security, pytest.mark.unit]
ALERT = json.loads((PROJECT_ROOT / "evals/cases/service-down/alert.json").read_text())
STATUS = {"unit": "x", "load_state": "loaded", "active_state": "active", "sub_state": "running", "journal": [], "started": True}
DISK = {"df": [], "du": [], "old_files": 0, "old_bytes": 0, "older_than_days": 7, "largest_old_files": []}


@pytest.mark.parametrize("call,listed", [
    ({"name": "service_status", "arguments": {"unit": "sshd"}}, "remediator_services"),
    ({"name": "service_status", "arguments": {"unit": "postgresql.service"}}, "remediator_services"),
    ({"name": "service_status", "arguments": {"unit": "remediator"}}, "never acts on remediator"),
    ({"name": "disk_usage", "arguments": {"paths": ["/root"]}}, "remediator_disk_usage_paths"),
    ({"name": "disk_usage", "arguments": {"paths": ["/etc/ssl/private"]}}, "remediator_disk_usage_paths"),
])
def test_a_model_reading_outside_the_hosts_lists_reads_nothing(tmp_path, call, listed):
    alert = AlertmanagerPayload.model_validate(ALERT).alerts[0]
    executor = ScriptedExecutor({"service_status": [STATUS], "disk_usage": [DISK]}, {})
    escalate = {"tool_calls": [{"name": "escalate", "arguments": {"reason": "done reading"}}]}
    with ScriptedLLM([{"match": f"Reference: {alert.fingerprint}.", "replies": [{"tool_calls": [call]}, escalate]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=model.url,
                                 llm_max_retries=0), executor=executor)
        w = engine.what_if(alert, check=True)
        answered = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert (call["name"], "diagnose") not in executor.calls, "it was read"
    assert answered and "not read:" in answered[0] and listed in answered[0]
    assert w.transcript is not None


def test_the_control_a_listed_unit_and_directory_are_read(tmp_path):
    alert = AlertmanagerPayload.model_validate(ALERT).alerts[0]
    executor = ScriptedExecutor({"service_status": [STATUS], "disk_usage": [DISK]}, {})
    calls = [{"name": "service_status", "arguments": {"unit": "api-gateway"}},
             {"name": "disk_usage", "arguments": {"paths": ["/var/log/webapp"]}}]
    escalate = {"tool_calls": [{"name": "escalate", "arguments": {"reason": "done reading"}}]}
    with ScriptedLLM([{"match": f"Reference: {alert.fingerprint}.", "replies": [{"tool_calls": calls}, escalate]}]) as model:
        engine = new_engine(Settings(data_dir=tmp_path, planner="llm", llm_alerts=["*"], llm_base_url=model.url,
                                 llm_max_retries=0), executor=executor)
        engine.what_if(alert, check=True)
    assert ("service_status", "diagnose") in executor.calls and ("disk_usage", "diagnose") in executor.calls


@pytest.mark.unit
@pytest.mark.parametrize("starts_at", ["1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])
def test_an_alert_cannot_set_where_the_journal_is_read_from(starts_at):
    """The attack: a label named `since` and a startsAt at the epoch or far ahead. `${since}` is the engine's (the
    label is `labels.since`, never `since`), and what reaches journal_errors is a moment it accepts (never before the
    epoch); the role itself never reads past `minutes` nor into the future."""
    from remediator.engine.catalog.inventory import load_inventory
    from remediator.engine.catalog.loader import load_catalog
    from remediator.engine.decide.configured import make_planner
    from remediator.engine.decide.decision import RecordedHistory, decide, situation_of
    from remediator.engine.decide.evidence import Evidence
    from remediator.engine.decide.policy import load_policy
    from remediator.engine.evals.cases import load_cases
    from remediator.engine.settings import Settings

    case = next(c for c in load_cases(PROJECT_ROOT / "evals" / "cases") if c.name == "high-error-rate-upstream")
    alert = case.alert.model_validate({**case.alert.model_dump(mode="json"), "startsAt": starts_at,
                                       "labels": {**case.alert.labels, "since": "1"}})
    settings = Settings(data_dir=PROJECT_ROOT / "var" / "nonexistent")
    catalog, inventory = load_catalog(settings.playbooks_dir), load_inventory(settings.inventory)
    executor = case.executor()
    decide(situation_of(alert, "app-server-01"), catalog=catalog, planner=make_planner(settings, catalog),
           policy=load_policy(settings.policies_dir, catalog, inventory), history=RecordedHistory(),
           evidence=Evidence(executor, catalog, "app-server-01", "t", 30, inventory=inventory), query=case.query)
    (since,) = [p["since"] for entry, p in executor.asked if entry == "journal_errors"]
    assert since != 1 and since >= 0
    assert since == max(0, int(alert.startsAt.timestamp()) - 600)
