"""The lab's Prometheus and Alertmanager: plain processes on 127.0.0.1, own config and data folders.

Prometheus scrapes every lab host's webapp (its 127.0.0.1:<lab_port>) with the rules in
lab/monitoring/rules.yml and alerts to Alertmanager, which posts to remediator's webhook with the
bearer token from a file. `down` stops both; nothing is left running.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jinja2

from remediator.engine import PROJECT_ROOT, SHIPPED
from remediator.engine.errors import RemediatorError
from remediator.engine.lab.fleet import LabHost
from remediator.engine.lab.harness import LabSettings
from remediator.engine.settings import Settings

__all__ = ["Monitoring", "MonitorStatus", "TEMPLATES"]

TEMPLATES = PROJECT_ROOT / "lab" / "monitoring"


@dataclass(frozen=True)
class MonitorStatus:
    name: str
    url: str
    running: bool
    pid: int | None


def _binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise RemediatorError(f"{names[0]} is not installed: run lab/setup.sh (Debian packages prometheus, "
                          "prometheus-alertmanager)")


class Monitoring:
    def __init__(self, state_dir: Path, prometheus_port: int, alertmanager_port: int, engine_port: int):
        self.dir = state_dir
        self.ports = {"prometheus": prometheus_port, "alertmanager": alertmanager_port}
        self.engine_port = engine_port

    @classmethod
    def for_lab(cls, settings: Settings) -> Monitoring:
        """The lab's monitoring as the settings place it (state under DATA_DIR/lab)."""
        ports = LabSettings()
        return cls(settings.data_dir / "lab", ports.prometheus_port, ports.alertmanager_port, settings.port)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.dir / name / "pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def status(self) -> list[MonitorStatus]:
        return [MonitorStatus(n, self.url(n), self._pid(n) is not None, self._pid(n)) for n in self.ports]

    def up(self, hosts: list[LabHost], token: str, timeout_s: float = 30) -> list[MonitorStatus]:
        """(Re)start Prometheus and Alertmanager for these lab hosts; wait until both are ready."""
        self.down()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                 autoescape=False, keep_trailing_newline=True, trim_blocks=True,
                                 lstrip_blocks=True)
        am_dir, prom_dir = self.dir / "alertmanager", self.dir / "prometheus"
        for d in (am_dir, prom_dir):
            d.mkdir(parents=True, exist_ok=True)
        token_file = am_dir / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        (am_dir / "alertmanager.yml").write_text(env.get_template("alertmanager.yml.j2").render(
            engine_port=self.engine_port, token_file=token_file))
        (prom_dir / "prometheus.yml").write_text(env.get_template("prometheus.yml.j2").render(
            hosts=hosts, rules=TEMPLATES / "rules.yml", own_rules=SHIPPED / "packaging" / "prometheus" / "remediator-rules.yml",
            alertmanager_port=self.ports["alertmanager"], engine_port=self.engine_port))
        self._start("alertmanager", [_binary("prometheus-alertmanager", "alertmanager"),
                                     f"--config.file={am_dir / 'alertmanager.yml'}", f"--storage.path={am_dir / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                                     "--cluster.listen-address="])
        self._start("prometheus", [_binary("prometheus"), f"--config.file={prom_dir / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={prom_dir / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}"])
        deadline = time.monotonic() + timeout_s
        for name in self.ports:
            while not self._ready(name):
                if self._pid(name) is None or time.monotonic() > deadline:
                    log = (self.dir / name / "log").read_text()[-1500:]
                    self.down()
                    raise RemediatorError(f"{name} did not start: {log}")
                time.sleep(0.3)
        return self.status()

    def _start(self, name: str, argv: list[str]) -> None:
        log = (self.dir / name / "log").open("w")
        # Its own session: it outlives `remediator lab up`, and `down` stops it by its pid.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (self.dir / name / "pid").write_text(str(proc.pid))

    def _ready(self, name: str) -> bool:
        try:
            return httpx.get(f"{self.url(name)}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def down(self, timeout_s: float = 10) -> list[str]:
        """Stop both processes (SIGTERM, then SIGKILL); returns what was stopped."""
        stopped = []
        for name in self.ports:
            pid = self._pid(name)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self._pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
                try:
                    os.waitpid(pid, os.WNOHANG)   # reap it when it is our own child
                except ChildProcessError:
                    pass
            if self._pid(name) is not None:
                os.kill(pid, signal.SIGKILL)
            (self.dir / name / "pid").unlink(missing_ok=True)
            stopped.append(name)
        return stopped
