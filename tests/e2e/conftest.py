import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab.harness import LAB_BLAST, REMEDIATOR, ServeProcess, free_port
from tests.lab import HOSTS, INVENTORY, on_host
from tests.standins import JIRA_TOKEN, JIRA_USER, Receivers

__all__ = ["INVENTORY", "on_host", "free_port", "Server", "SAMPLES", "TOKEN"]
SAMPLES = PROJECT_ROOT / "tests" / "fixtures" / "samples"
HERE = Path(__file__).parent
PAYLOADS = HERE / "payloads"
TOKEN = "e2e-token-" + "x" * 22
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"   # PagerDuty integration keys are 32 characters


@pytest.fixture(scope="module")
def lab_fleet(lab):
    """app-server-01 and api-server-01 of this process's lab (tests/lab.py): running, fresh unless the module before
    left them clean. Each end-to-end test leaves them as it found them."""
    lab.use(["app-server-01", "api-server-01"])


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built as a release would be (tests/e2e/test_wheel.py, test_image.py)."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(PROJECT_ROOT)],
                   check=True, capture_output=True, timeout=600)
    return next(dist.glob("remediator-*.whl"))


@pytest.fixture(scope="session")
def receivers():
    r = Receivers()
    yield r
    r.close()


class Server(ServeProcess):
    """`remediator serve` as a process (remediator/engine/lab/harness.py), and an HTTP client that speaks to it with the token."""

    def __init__(self, data_dir: Path, receivers: Receivers, port: int | None = None, *, new_session: bool = False,
                 **settings: str):
        port = port or free_port()
        self.data_dir = data_dir
        self.env = {**os.environ, **LAB_BLAST, "REMEDIATOR_DATA_DIR": str(data_dir),
                    "REMEDIATOR_TOKENS": f"old-token-0123456789abcdef,{TOKEN}",
                    "REMEDIATOR_INVENTORY": str(INVENTORY),
                    "REMEDIATOR_PORT": str(port), "REMEDIATOR_PUBLIC_URL": f"http://127.0.0.1:{port}",
                    "REMEDIATOR_SLACK_WEBHOOK_URL": f"{receivers.url}/slack",
                    "REMEDIATOR_PAGERDUTY_URL": f"{receivers.url}/pagerduty",
                    "REMEDIATOR_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
                    "REMEDIATOR_WEBHOOK_URL": f"{receivers.url}/hook", "COLUMNS": "200",   # the CLI's tables unwrapped
                    "REMEDIATOR_TEAMS_WEBHOOK_URL": f"{receivers.url}/teams", "REMEDIATOR_JIRA_URL": f"{receivers.url}/jira",
                    "REMEDIATOR_JIRA_USER": JIRA_USER, "REMEDIATOR_JIRA_API_TOKEN": JIRA_TOKEN,
                    "REMEDIATOR_TICKET_WEBHOOK_URL": f"{receivers.url}/ticket",
                    **{f"REMEDIATOR_{k.upper()}": v for k, v in settings.items()}}
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.env, port, data_dir / "serve.log", new_session=new_session)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    def post(self, payload_file: Path, **kwargs) -> httpx.Response:
        return self.client.post("/webhook/alertmanager", content=payload_file.read_bytes(),
                                headers={"content-type": "application/json", **kwargs.pop("headers", {})}, **kwargs)

    def post_bytes(self, body: bytes) -> httpx.Response:
        return self.client.post("/webhook/alertmanager", content=body, headers={"content-type": "application/json"})

    def taken_in(self, response: httpx.Response, timeout_s: float = 30) -> dict:
        """What an acknowledged webhook became (GET /deliveries/{id}, once the ingester took it in)."""
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            delivery = self.client.get(f"/deliveries/{response.json()['delivery']}").json()
            if delivery["ingested"]:
                return delivery
            time.sleep(0.05)
        raise AssertionError(f"delivery {response.json()} not taken in after {timeout_s} s\n{self.log.read_text()[-3000:]}")

    def wait_state(self, incident_id: str, states: set[str], timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        detail: dict = {}
        while time.monotonic() < deadline:
            detail = self.client.get(f"/incidents/{incident_id}").json()
            if detail["state"] in states:
                return detail
            time.sleep(0.5)
        raise AssertionError(f"incident {incident_id} is {detail.get('state')}, not in {states} after {timeout_s} s: "
                             f"{detail.get('reason')}\n{self.log.read_text()[-3000:]}")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(REMEDIATOR), *args], env=self.env, capture_output=True, text=True, timeout=120)

    def kill(self) -> None:
        """SIGKILL to serve's process group (serve and its ingester), as an OOM kill would. Its ansible runs are
        in sessions of their own (pexpect's): they must end by themselves (remediator/engine/run/tether.py)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def left_behind(self, within_s: float = 60) -> list[str]:
        """The command lines of processes that this (killed) serve started and that still run after `within_s` (60: the
        warm Ansible gives its runs 10 s after SIGTERM, and on CI's loaded cores it was still exiting at 20):
        an ansible-playbook of its runs, a fork of one, their ssh. Found by the run's directory in their
        environment (ansible-runner's AWX_ISOLATED_DATA_DIR, inherited by every fork). An SSH connection master
        (ControlPersist) is not counted: it is shared by every run to its host, carries no task, and ends when idle."""
        marker = f"={self.data_dir}/".encode()
        deadline = time.monotonic() + within_s
        while True:
            left = []
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    environ, cmdline = (Path(f"/proc/{pid}/{f}").read_bytes() for f in ("environ", "cmdline"))
                except OSError:
                    continue
                if marker in environ and not (cmdline.startswith(b"ssh: ") and b"[mux]" in cmdline):
                    left.append(cmdline.replace(b"\0", b" ").decode(errors="replace")[:300])
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def stop(self, timeout_s: float = 30) -> None:
        super().stop(timeout_s)


@pytest.fixture(scope="module")
def server(tmp_path_factory, lab_fleet, receivers):
    s = Server(tmp_path_factory.mktemp("serve"), receivers)
    yield s
    s.stop()


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args[0]} did not become ready: {log.read_text()[-3000:]}")
        time.sleep(0.3)


def start_alertmanager(work: Path, server_port: int, max_alerts: int = 0) -> tuple[str, subprocess.Popen]:
    """Debian's prometheus-alertmanager on loopback, posting to remediator on server_port."""
    port = free_port()
    config = work / "alertmanager.yml"
    config.write_text(string.Template((HERE / "alertmanager.yml").read_text()).substitute(
        PORT=server_port, TOKEN=TOKEN, MAX_ALERTS=max_alerts))
    log = work / "alertmanager.log"
    proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={config}", f"--storage.path={work / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(f"{url}/-/ready", proc, log)
    return url, proc


def start_prometheus(work: Path, alertmanager_url: str) -> tuple[str, subprocess.Popen]:
    """Debian's prometheus on loopback, scraping the lab and alerting to alertmanager_url."""
    port = free_port()
    (work / "rules.yml").write_text((HERE / "rules.yml").read_text())
    config = work / "prometheus.yml"
    config.write_text(string.Template((HERE / "prometheus.yml").read_text()).substitute(
        AM_PORT=alertmanager_url.rsplit(":", 1)[1], WEBAPP_PORT=HOSTS["app-server-01"].port))
    log = work / "prometheus.log"
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(f"{url}/-/ready", proc, log)
    return url, proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
