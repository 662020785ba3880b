"""Part of finding 17, and L1 of the second review: the alert's `generatorURL` PromQL was run verbatim: whoever posted
the alert chose a query (any query, any cost) that then decided whether the fix "cleared"; then, any query in a URL
that named the configured Prometheus (every real alert shows that address). Against a real Prometheus holding the
rules: the expression is the alerting rule of the alert's name and labels; the URL only picks among several such
rules; an unknown rule gives no expression at all."""
import subprocess
from urllib.parse import quote

import pytest

from remediator.engine.outbound.prometheus import Prometheus, PrometheusError
from tests.e2e.conftest import HERE, _wait_ready, free_port

pytestmark = pytest.mark.security
LABELS = {"alertname": "ServiceDown", "severity": "critical", "service": "webapp", "host": "app-server-01"}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    work = tmp_path_factory.mktemp("prom")
    # the e2e rules, and one alert defined by two rules with the same labels (the URL picks between them)
    (work / "two.yml").write_text("groups:\n  - name: two\n    rules:\n"
                                  "      - {alert: WorkerDown, expr: 'up{job=\"worker\"} == 0', labels: {service: worker}}\n"
                                  "      - {alert: WorkerDown, expr: 'absent(up{job=\"worker\"})', labels: {service: worker}}\n")
    (work / "prometheus.yml").write_text(f"rule_files: [{HERE / 'rules.yml'}, {work / 'two.yml'}]\n")
    url = f"http://127.0.0.1:{free_port()}"
    log = work / "prometheus.log"
    proc = subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address={url.removeprefix('http://')}"], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    _wait_ready(f"{url}/-/ready", proc, log)
    yield url
    proc.terminate()
    proc.wait(10)


def _graph(base: str, expr: str) -> str:
    return f"{base}/graph?g0.expr={quote(expr)}&g0.tab=1"


def test_a_foreign_generator_url_does_not_choose_the_query(prometheus):
    hostile = _graph("http://prometheus.attacker.example:9090", 'vector(0) > 1')   # never returns: "cleared"
    assert Prometheus(prometheus).expression_for(hostile, "ServiceDown", LABELS) == 'up{job="webapp"} == 0'


def test_an_unknown_rule_from_a_foreign_url_gives_no_query(prometheus):
    hostile = _graph("http://prometheus.attacker.example:9090", 'count(count_values("x", up))')
    assert Prometheus(prometheus).expression_for(hostile, "MadeUpAlert", LABELS) is None
    assert Prometheus(prometheus).expression_for(hostile, "ServiceDown", {**LABELS, "service": "other"}) is None


def test_a_url_naming_this_prometheus_does_not_choose_the_query_either(prometheus):
    """L1: the review's query, in a URL at the configured Prometheus' own address, under any alertname."""
    hostile = _graph(prometheus, 'topk(3, {__name__=~"prometheus_build_info|up"})')
    assert Prometheus(prometheus).expression_for(hostile, "AnyName", {}) is None
    assert Prometheus(prometheus).expression_for(hostile, "ServiceDown", LABELS) == 'up{job="webapp"} == 0'
    external = _graph("https://prom.example.com", "up == 0")             # its --web.external-url
    assert Prometheus(prometheus, external_url="https://prom.example.com/").expression_for(
        external, "AnyName", LABELS) is None


def test_the_control_its_own_url_picks_among_rules_of_one_name(prometheus):
    worker = {"alertname": "WorkerDown", "service": "worker"}
    assert Prometheus(prometheus).expression_for("", "WorkerDown", worker) is None          # two rules: no single one
    for expr in ('up{job="worker"} == 0', 'absent(up{job="worker"})'):
        assert Prometheus(prometheus).expression_for(_graph(prometheus, expr), "WorkerDown", worker) == expr
        external = Prometheus(prometheus, external_url="https://prom.example.com/")
        assert external.expression_for(_graph("https://prom.example.com", expr), "WorkerDown", worker) == expr
        assert Prometheus(prometheus).expression_for(_graph("http://attacker.example:9090", expr), "WorkerDown",
                                                     worker) is None


def test_queries_carry_a_timeout(prometheus):
    """Prometheus enforces it: an expensive query (a year of one-second steps) is cut off, and the error says so."""
    with pytest.raises(PrometheusError, match="timed out|timeout"):
        Prometheus(prometheus, timeout_s=0.5).query("count_over_time(vector(1)[365d:1s])")
    assert Prometheus(prometheus, timeout_s=0.5).query("vector(1)")[0].value == "1"      # the control
