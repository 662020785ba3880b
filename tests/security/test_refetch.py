"""Finding 14: the refetch of a truncated group filtered Alertmanager's API by the body's own `receiver` (pasted into
a regex) and `groupLabels` (empty: no filter), so a sender could pull in alerts routed to other receivers. Against a
real Alertmanager with a second route: only remediator's receiver, matched exactly, and a group filter required."""
import json
import subprocess

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.intake.inbox import parse_payload
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.e2e.conftest import _wait_ready, free_port
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = pytest.mark.security
SAMPLE = json.loads((PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_text())


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    work = tmp_path_factory.mktemp("am")
    url = f"http://127.0.0.1:{free_port()}"
    log = work / "alertmanager.log"
    proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={PROJECT_ROOT / 'tests/security/alertmanager-two-receivers.yml'}",
                             f"--storage.path={work / 'data'}", f"--web.listen-address={url.removeprefix('http://')}",
                             "--cluster.listen-address="], stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_ready(f"{url}/-/ready", proc, log)
    for labels in (["alertname=SecretLeak", "team=secops", "instance=api-server-01:9100", "severity=critical"],
                   ["alertname=ServiceDown", "instance=api-server-01:9100", "service=api-gateway", "severity=critical"]):
        added = subprocess.run(["amtool", f"--alertmanager.url={url}", "alert", "add", *labels], capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
    yield url
    proc.terminate()
    proc.wait(10)


def _truncated(receiver: str, group: dict[str, str]):
    body = {**SAMPLE, "receiver": receiver, "groupLabels": group, "truncatedAlerts": 5, "alerts": SAMPLE["alerts"][:1]}
    return parse_payload(json.dumps(body).encode())


def _alertnames(engine: Engine) -> set[str]:
    with engine.store.read() as s:
        return {i.alertname for i in s.query(Incident).all()}


@pytest.mark.parametrize("receiver,group", [
    (".*", {"alertname": "SecretLeak"}),                  # a pattern for the receiver
    ("secops", {"alertname": "SecretLeak"}),              # another route's receiver by name
    ("remediator|secops", {"alertname": "SecretLeak"}),   # an alternation
    ("remediator", {"alertname": "SecretLeak"}),          # our receiver, their group: their alert is not routed to us
    ("remediator", {}),                                   # no group filter: everything
])
def test_a_truncated_delivery_cannot_pull_in_another_routes_alerts(tmp_path, alertmanager, receiver, group):
    engine = new_engine(Settings(data_dir=tmp_path, alertmanager_url=alertmanager))
    payload = _truncated(receiver, group)
    result = take_in(engine, payload.model_dump_json().encode())
    engine.refetch_truncated(payload, result)
    assert "SecretLeak" not in _alertnames(engine)


def test_the_control_our_own_group_is_fetched(tmp_path, alertmanager):
    engine = new_engine(Settings(data_dir=tmp_path, alertmanager_url=alertmanager))
    payload = _truncated("remediator", {"alertname": "ServiceDown"})
    result = take_in(engine, payload.model_dump_json().encode())
    assert engine.refetch_truncated(payload, result) >= 1


class _SlowAlertmanager:
    """Alertmanager's API v2 `GET /api/v2/alerts` on loopback that answers (with no alerts) only once `release` is
    set: as slow as the test needs, whatever the machine's load; counts calls."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        outer = self
        self.calls, self.release = 0, threading.Event()
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with outer._lock:
                    outer.calls += 1
                outer.release.wait(60)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"[]")

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_many_truncated_deliveries_of_one_group_cost_one_fetch_and_a_bounded_pool(tmp_path):
    """N9 of the second review: 200 identical truncated POSTs (Alertmanager slow to answer) made 200 API calls, and
    serve's threads went from 11 to 78. Now one fetch per group is in flight, on a pool of a few threads, and at most
    `Refetch.PENDING_MAX` groups wait; each delivery's record says what came of it."""
    import threading
    slow = _SlowAlertmanager()   # answers once released: every submit below finds its group in flight
    try:
        engine = new_engine(Settings(data_dir=tmp_path, alertmanager_url=slow.url))
        payload = _truncated("remediator", {"alertname": "ServiceDown"})
        result = take_in(engine, payload.model_dump_json().encode())
        # 30 posts of one group (each skipped one writes a note: few enough to stay well inside the fetch's 10 s
        # timeout on a loaded machine, so the first fetch is still in flight for all of them)
        futures = [engine.refetch_truncated.submit(payload, result) for _ in range(30)]
        others = [_truncated("remediator", {"alertname": f"Group{n}"}) for n in range(40)]   # 40 more groups
        futures += [engine.refetch_truncated.submit(p, result) for p in others]
        refetching = [t for t in threading.enumerate() if t.name.startswith("refetch")]
        assert 0 < len(refetching) <= engine.refetch_truncated.WORKERS
        taken = [f for f in futures if f is not None]
        assert len(taken) == engine.refetch_truncated.PENDING_MAX
        slow.release.set()
        for f in taken:
            f.result(timeout=60)
        assert slow.calls == engine.refetch_truncated.PENDING_MAX   # not 70
        # the group fetched again once the first fetch ended
        assert engine.refetch_truncated.submit(payload, result) is not None
    finally:
        engine.refetch_truncated.close()
        slow.close()
