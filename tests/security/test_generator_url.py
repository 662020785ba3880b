"""Part of finding 17: the alert's `generatorURL` PromQL was run verbatim: whoever posted the alert chose a query
(any query, any cost) that then decided whether the fix "cleared". Against a real Prometheus holding the rule: the
expression is taken from generatorURL only when the URL names that Prometheus; otherwise the alerting rule of the
alert's name (and labels) is looked up there; an unknown rule gives no expression at all."""
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
    (work / "prometheus.yml").write_text(f"rule_files: [{HERE / 'rules.yml'}]\n")
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


def test_the_control_its_own_generator_url_is_read(prometheus):
    own = _graph(prometheus, 'up{job="webapp"} == 0')
    assert Prometheus(prometheus).expression_for(own, "AnyName", LABELS) == 'up{job="webapp"} == 0'
    external = _graph("https://prom.example.com", "up == 0")             # its --web.external-url
    assert Prometheus(prometheus, external_url="https://prom.example.com/").expression_for(
        external, "AnyName", LABELS) == "up == 0"


def test_queries_carry_a_timeout(prometheus):
    """Prometheus enforces it: an expensive query (a year of one-second steps) is cut off, and the error says so."""
    with pytest.raises(PrometheusError, match="timed out|timeout"):
        Prometheus(prometheus, timeout_s=0.5).query("count_over_time(vector(1)[365d:1s])")
    assert Prometheus(prometheus, timeout_s=0.5).query("vector(1)")[0].value == "1"      # the control
