"""The fault-scenario suite's data and its judge's arithmetic (remediator/engine/lab/scenarios.py); the scenarios
themselves run against the lab in tests/chaos/test_scenarios.py."""
import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.errors import ConfigError
from remediator.engine.lab.scenarios import (
    SCENARIOS,
    ScenarioResult,
    load_scenarios,
    made_worse,
    report_markdown,
    summarize,
)

pytestmark = pytest.mark.unit
CATALOG = load_catalog(PROJECT_ROOT / "playbooks")


def test_every_scenario_loads_names_a_lab_host_and_says_what_right_is():
    scenarios = load_scenarios(CATALOG)
    assert len(scenarios) == len(list(SCENARIOS.glob("*.yml"))) >= 9
    lab_hosts = {"app-server-01", "app-server-02", "api-server-01", "db-primary-01"}
    for sc in scenarios:
        assert sc.host in lab_hosts, sc.id
        assert sc.inject or sc.fire, f"{sc.id}: no fault"
        assert sc.unharmed, f"{sc.id}: nothing checks that it was not made worse"
        assert sc.outcome != "fixed" or sc.fixed, f"{sc.id}: a fix the host does not confirm"
        assert sc.outcome != "escalated" or sc.says, f"{sc.id}: an escalation must name the right cause"
        assert not sc.cleanup or sc.recovered or not sc.inject, f"{sc.id}: a cleanup nothing confirms"


@pytest.mark.parametrize("text,message", [
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: fixed\n", "names its entry"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: escalated\nentry: restart_service\n", "names no entry"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: held\nentry: delete_everything\n", "unknown entry"),
    ("id: y\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: escalated\n", "must be the file's name"),
    ("id: x\nclass: c\ntitle: t\nhost: h\nalert: A\noutcome: maybe\n", "outcome"),
])
def test_a_scenario_that_cannot_be_judged_does_not_load(tmp_path, text, message):
    (tmp_path / "x.yml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_scenarios(CATALOG, tmp_path)


def _result(id_, klass, right=True, worse=(), seconds=10.0, fixed=False):
    return ScenarioResult(id=id_, klass=klass, host="h", alert="A", expected="e", got="g", right=right,
                          worse=list(worse), problems=[] if right else ["p"], seconds=seconds, fixed=fixed)


def test_the_summary_counts_right_and_worse_and_takes_medians_per_class_and_of_the_fixes():
    results = [_result("a", "crash loop", seconds=8.0), _result("b", "crash loop", right=False, seconds=20.0),
               _result("c", "OOM kill", fixed=True, seconds=14.0), _result("d", "OOM kill", fixed=True, seconds=18.0),
               _result("e", "security", right=False, worse=["ran restart_service on app-server-02"], seconds=None)]
    s = summarize(results)
    assert (s.scenarios, s.right, s.right_pct, s.worse) == (5, 3, 60.0, 1)
    assert s.median_s == 16.0 and s.fixed_median_s == 16.0
    assert s.by_class["crash loop"].model_dump() == {"scenarios": 2, "right": 1, "median_s": 14.0}
    assert s.by_class["security"].median_s is None
    md = report_markdown(results, s)
    assert "| e | security |" in md and "MADE WORSE: ran restart_service on app-server-02" in md
    assert "handled right: 3/5 (60.0 %); made worse: 1" in md


def _incident(id_, state, *runs):
    return {"id": id_, "state": state, "reason": "r", "runs": [
        {"mode": mode, "entry": entry, "hosts": hosts, "status": status, "summary": "s"} for mode, entry, hosts, status in runs]}


def test_made_worse_sees_another_host_a_loop_and_a_failed_run_in_any_incident_of_the_scenario():
    check = ("check", "restart_service", ["app-server-01"], "successful")
    fix = ("apply", "restart_service", ["app-server-01"], "successful")
    assert made_worse("app-server-01", [_incident("i1", "resolved", check, fix)]) == []
    assert made_worse("app-server-01", [_incident("i1", "escalated", check)]) == []
    elsewhere = made_worse("app-server-01", [_incident("i1", "escalated"),
                                             _incident("i2", "resolved", ("apply", "restart_service", ["app-server-02"], "successful"))])
    assert elsewhere == ["incident i2 ran restart_service on app-server-02, not only app-server-01"]
    loop = made_worse("app-server-01", [_incident("i1", "resolved", fix), _incident("i3", "resolved", fix)])
    assert loop == ["2 real runs (restart_service, restart_service): a loop, not a fix"]
    failed = made_worse("app-server-01", [_incident("i1", "failed", ("apply", "restart_service", ["app-server-01"], "failed"))])
    assert failed == ["incident i1's real run of restart_service failed: s"]
    assert made_worse("app-server-01", [_incident("i1", "resolved", fix), _incident("i3", "resolved", fix)], allowed=2) == []


def test_a_serve_that_refuses_the_checkout_s_token_is_said_in_one_line_and_one_that_takes_it_is_used(tmp_path):
    """README command 1 (lab/first-fix.sh) leaves a serve running; `remediator demo` or `scenarios run` after it talk
    to that serve. With another token they say so and how to go on (before: a TypeError, reading the 401 as
    incidents); with the token the checkout keeps (DATA_DIR/serve-token, which first-fix.sh's serve takes) they use it."""
    import subprocess

    from remediator.engine.lab.drills import Server
    from remediator.engine.lab.harness import REMEDIATOR, ServeProcess, free_port, lab_token
    from remediator.engine.lab.monitoring import Monitoring
    from remediator.engine.settings import Settings

    port = free_port()
    theirs = "first-fix:" + "t" * 40
    serve = ServeProcess({"REMEDIATOR_TOKENS": theirs, "REMEDIATOR_DATA_DIR": str(tmp_path / "theirs"),
                          "REMEDIATOR_PORT": str(port)}, port,
                         tmp_path / "serve.log")
    try:
        mine = Settings(data_dir=tmp_path / "mine", port=port)
        assert lab_token(mine) != theirs and (tmp_path / "mine" / "serve-token").stat().st_mode & 0o077 == 0
        env = {"PATH": "/usr/bin:/bin", "REMEDIATOR_DATA_DIR": str(tmp_path / "mine"), "REMEDIATOR_PORT": str(port)}
        done = subprocess.run([str(REMEDIATOR), "scenarios", "run"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
        assert "refuses this checkout's token" in done.stdout + done.stderr, done.stdout + done.stderr
        (tmp_path / "mine" / "serve-token").write_text(theirs + "\n")      # as lab/first-fix.sh keeps it
        taken = Server(mine, Monitoring.for_lab(mine), tmp_path / "unused.log")
        assert not taken.started and taken.token == theirs
    finally:
        serve.stop(10)


def test_demo_on_a_store_with_an_open_brake_says_so_before_it_starts_anything(tmp_path):
    """An operator's first day: a demo on a store where earlier alerts opened a storm brake failed 5 of 12 drills
    without saying why. Now it says which scopes are open and the two ways on, before any container starts."""
    import subprocess

    from remediator.engine.decide import breaker
    from remediator.engine.lab.harness import REMEDIATOR
    from remediator.engine.settings import Settings
    from remediator.engine.store.db import Store
    from remediator.engine.store.tables import BreakerRow
    settings = Settings(data_dir=tmp_path)
    store = Store(settings.db_url, "NORMAL")
    store.prepare(True)
    with store.write() as s:
        s.add(BreakerRow(scope="brake:alert:ServiceDown", open=True, reason="ServiceDown fires in 2 regions"))
    assert [b.scope for b in breaker.status(store) if b.open] == ["brake:alert:ServiceDown"]
    env = {"PATH": "/usr/bin:/bin", "REMEDIATOR_DATA_DIR": str(tmp_path)}
    for command in (["demo"], ["chaos", "run"]):
        done = subprocess.run([str(REMEDIATOR), *command], env=env, capture_output=True, text=True, timeout=60)
        said = " ".join((done.stdout + done.stderr).split())
        assert done.returncode == 2 and "Traceback" not in said, said
        assert "brake:alert:ServiceDown (ServiceDown fires in 2 regions)" in said and "REMEDIATOR_DATA_DIR=var/demo" in said
        assert "started remediator serve" not in said and "lab:" not in said


def test_the_judge_asks_a_busy_serve_again_and_a_wrong_question_fails_at_once():
    """A serve busy beside a loaded lab answered the judge a 5xx or nothing: the scenario run died without a report
    (CI, 2026-12-07). `read` asks again; a 4xx is the judge's own mistake and is raised at once."""
    import http.server
    import json
    import threading

    import httpx

    from remediator.engine.lab.hostops import read
    asked: list[str] = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 (http.server's name)
            asked.append(self.path)
            status, body = ((503, b"{}") if self.path.startswith("/incidents?") and len(asked) <= 2
                            else (404, b"{}") if self.path == "/nowhere" else (200, json.dumps([{"id": "i1"}]).encode()))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=5) as api:
            assert read(api, "/incidents", limit=1000) == [{"id": "i1"}]
            assert asked == ["/incidents?limit=1000"] * 3
            with pytest.raises(httpx.HTTPStatusError, match="404"):
                read(api, "/nowhere")
            assert asked[-1] == "/nowhere" and len(asked) == 4
    finally:
        server.shutdown()
