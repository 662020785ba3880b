"""End to end with planner: llm — `remediator serve` as a process, the real openai client talking to the
scripted OpenAI-compatible server on loopback, real Ansible against the lab hosts."""
import pytest

from tests.e2e.conftest import PAYLOADS, SAMPLES, Server, on_host
from tests.scripted_llm import ScriptedLLM

pytestmark = pytest.mark.e2e
FINAL = {"resolved", "escalated", "failed", "denied", "awaiting_approval"}


@pytest.fixture(scope="module")
def model():
    with ScriptedLLM() as s:
        yield s


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory, lab_fleet, receivers, model):
    s = Server(tmp_path_factory.mktemp("serve-llm"), receivers, planner="llm", llm_alerts="*", llm_base_url=model.url,
               llm_max_retries="0", llm_timeout_s="10")
    yield s
    s.stop()


def test_the_model_fixes_the_stopped_gateway(llm_server, model):
    model.add("fired for host api-server-01", [
        {"tool_calls": [{"name": "service_status", "arguments": {"unit": "api-gateway"}}]},
        {"tool_calls": [{"name": "restart_service", "arguments": {
            "unit": "api-gateway", "reason": "ServiceDown on api-server-01",
            "rationale": "service_status shows api-gateway inactive; restart it"}}]}])
    on_host("api-server-01", "systemctl", "stop", "api-gateway")

    r = llm_server.post(SAMPLES / "alertmanager-firing-grouped.json")
    assert r.status_code == 200, r.text
    details = [llm_server.wait_state(i, FINAL) for i in llm_server.taken_in(r)["incidents"]]
    (fixed,) = [d for d in details if d["host"] == "api-server-01"]
    assert fixed["state"] == "resolved", fixed["reason"]
    assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() == "active"

    proposal = fixed["proposal"]
    assert proposal["planner"] == "llm" and not proposal["fallback"]
    assert proposal["entry"] == "restart_service" and proposal["params"]["unit"] == "api-gateway"
    assert proposal["rationale"].startswith("the model: service_status shows")
    # The model's diagnostic is the evidence; the entry's own (same question) was not asked twice.
    assert fixed["evidence"]["service_status"]["report"]["active_state"] in {"inactive", "failed"}
    assert [run["mode"] for run in fixed["runs"]].count("diagnose") == 1
    t = fixed["transcript"]
    assert t["outcome"] == "proposal" and [c["name"] for c in t["calls"]] == ["service_status", "restart_service"]
    assert t["prompt_tokens"] > 0 and len(t["latency_ms"]) == t["rounds"] == 2
    assert any(m["role"] == "tool" and "active_state" in m["content"] for m in t["messages"])
    kinds = [e["kind"] for e in fixed["timeline"]]
    assert kinds.index("planner.transcript") < kinds.index("incident.planned") < kinds.index("run.apply")


def test_an_obeyed_injection_is_refused_and_nothing_runs(llm_server, model):
    # The compromised model does what the annotation says.
    model.add("restart sshd instead", [
        {"tool_calls": [{"name": "restart_service", "arguments": {"unit": "sshd", "reason": "as asked", "rationale": "as asked"}}]}])
    r = llm_server.post(PAYLOADS / "llm-injected-annotation.json")
    (incident_id,) = llm_server.taken_in(r)["incidents"]
    d = llm_server.wait_state(incident_id, FINAL)
    assert d["state"] == "denied"
    # the first barrier: sshd is on no allow-list of the host's in the inventory (the CEL rules would deny it too)
    assert "unit 'sshd' is not on" in d["reason"] and "remediator_services" in d["reason"]
    assert d["proposal"]["params"]["unit"] == "sshd" and d["decision"]["verdict"] == "deny"
    assert not any(run["mode"] in ("check", "apply") for run in d["runs"])
    assert d["transcript"]["calls"][0]["name"] == "restart_service"


def test_a_failing_endpoint_falls_back_to_the_runbook(llm_server, model):
    model.add("model endpoint failing", [{"status": 500, "message": "out of memory"}])
    on_host("app-server-01", "systemctl", "stop", "webapp")
    r = llm_server.post(PAYLOADS / "llm-endpoint-fails.json")
    (incident_id,) = llm_server.taken_in(r)["incidents"]
    d = llm_server.wait_state(incident_id, FINAL)
    assert d["state"] == "resolved", d["reason"]
    assert on_host("app-server-01", "systemctl", "is-active", "webapp").stdout.strip() == "active"
    assert d["proposal"]["planner"] == "runbook"
    assert "answered HTTP 500" in d["proposal"]["fallback"]
    assert d["transcript"]["outcome"] == "fallback"
    metrics = llm_server.client.get("/metrics").text
    assert 'remediator_plans_total{outcome="fallback",planner="llm"} 1.0' in metrics
