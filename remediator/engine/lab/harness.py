"""`remediator serve` (or any server) as a process on loopback, waited on until it answers /healthz.

The one harness the drills (remediator/engine/lab/drills.py), the benchmarks (bench/common.py) and the end-to-end
tests (tests/e2e/conftest.py) start servers with; the lab's settings (its ports, its token) live here too.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from remediator.engine.errors import ConfigError
from remediator.engine.settings import Settings

__all__ = ["LabSettings", "lab_token", "free_port", "ServeProcess", "REMEDIATOR", "LAB_BLAST"]

#: the `remediator` console script of the Python running this
REMEDIATOR = Path(sys.executable).parent / "remediator"
#: The lab's drills and tests break hosts of both of its regions within minutes, one after the other, on purpose (a
#: fleet's storm would brake and wave them: docs/scaling.md). serve runs them with the cross-region brake and the waves
#: off; the two-region drill (tests/chaos/test_regions.py) turns them back on.
LAB_BLAST = {"REMEDIATOR_BRAKE_REGIONS": "99", "REMEDIATOR_WAVE_WINDOW_S": "0"}


class LabSettings(BaseSettings):
    """Where the lab's own Prometheus and Alertmanager listen (REMEDIATOR_LAB_*): lab tooling, not the product's."""

    model_config = SettingsConfigDict(env_prefix="REMEDIATOR_LAB_", extra="ignore")
    prometheus_port: int = 19090
    alertmanager_port: int = 19093


def lab_token(settings: Settings) -> str:
    """The token the lab's Alertmanager, the drills and the scenarios use: the first configured one, else the one made
    for this data dir once and kept in DATA_DIR/serve-token (mode 0600), never a well-known default. lab/first-fix.sh
    keeps the serve it starts on the same file, so `remediator demo` after it talks to that serve with its token."""
    if settings.tokens:
        return settings.tokens[0].get_secret_value()
    kept = settings.data_dir / "serve-token"
    if not kept.is_file() or not kept.read_text().strip():
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.touch(mode=0o600)
        kept.write_text(f"lab:{secrets.token_urlsafe(32)}\n")
    return kept.read_text().strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, codes: tuple[int, ...] = (200,)) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code in codes
    except httpx.HTTPError:
        return False


class ServeProcess:
    """A server process (default: `remediator serve`) started with `env`, waited on until /healthz answers."""

    def __init__(self, env: dict[str, str], port: int, log: Path, *, argv: list[str] | None = None,
                 new_session: bool = False, healthy_codes: tuple[int, ...] = (200,), timeout_s: float = 60,
                 cwd: Path | None = None, inherit_env: bool = True):
        """`inherit_env` False: `env` alone (an installation tried the way a fresh shell would run it)."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.argv = argv or [str(REMEDIATOR), "serve"]
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **env} if inherit_env else env, cwd=cwd,
                                     stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=new_session)
        deadline = time.monotonic() + timeout_s
        while not healthy(self.url, healthy_codes):
            if self.proc.poll() is not None:
                raise ConfigError(f"{self.argv[0]} exited ({self.proc.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"{self.argv[0]} did not answer /healthz within {timeout_s:.0f} s: {self.tail()}")
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:] if self.log.is_file() else ""

    def rss_mb(self, field: str = "VmRSS") -> float:
        """The server's memory, with its own Python children (serve's ingester process): not its ansible-playbook
        runs. A sum of RSS counts shared pages twice: an upper bound."""
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            try:
                if b"multiprocessing" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(int(child))
            except OSError:
                continue
        return sum(_rss_mb(pid, field) for pid in pids)

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM (serve stops gracefully), SIGKILL after `timeout_s`."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _rss_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
