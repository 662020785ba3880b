"""A warm Ansible: one process that has imported ansible-core once and forks a child per ansible-playbook run.

Most of a catalog run's time is not Ansible's work but its start (Python, its imports, its plugins: about 0.5 s)
and, on the host, one new Python per module task (0.2-0.4 s each; docs/benchmarks.md). So an engine starts a
server once (run/warm_server.py): it imports ansible-core and mitogen's strategy, starts mitogen's connection
multiplexers, and then serves each run as a fork of itself. The multiplexers outlive every run, so a host's
connection, and the Python that mitogen keeps on it, is set up once, not once per task or per run.

ansible-runner does not know: the tether it starts as `ansible-playbook` (run/tether.py) hands its terminal, its
arguments, its environment and its directory to the server and waits for the exit status, passing on the signals
it gets. The child runs Ansible's own `ansible-playbook` code with that terminal, environment and directory, so the
events, artifacts, Preview and digest come out of the same callback as before. Where a child cannot be that run
(an Ansible setting that Ansible reads at import differs from the server's, another ansible.cfg applies), it
becomes the real ansible-playbook (exec), the path every run took before; so does a tether that cannot reach a
server.

The server is this module's `WarmAnsible`'s: started on first use, from a pipe it holds (the server ends when the
engine's process does, whatever thread started it), replaced when the inventory or a catalog module changes (the
old one finishes its runs first), started again if it died.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["WarmAnsible", "LIVE", "MITOGEN_ENV"]

log = logging.getLogger(__name__)

#: settings Ansible reads while a run runs (not at import): a run may differ from the server in these
LIVE = frozenset({"ANSIBLE_CACHE_PLUGIN_CONNECTION", "ANSIBLE_ROLES_PATH", "AWX_ISOLATED_DATA_DIR",
                  "RUNNER_OMIT_EVENTS", "RUNNER_ONLY_FAILED_EVENTS"})
_READY_S = 30.0


def mitogen_env() -> dict[str, str]:
    """The Ansible settings that put mitogen's strategy in place; none when mitogen is not installed."""
    try:
        import ansible_mitogen
    except ImportError:
        return {}
    plugins = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


MITOGEN_ENV = mitogen_env()


class WarmAnsible:
    """The engine's side of the warm server: `socket()` for each run, `close()` at the end."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path, watch: list[Path], idle_s: float = 600):
        self.logs, self.env, self.cwd, self.watch, self.idle_s = logs, env, cwd, watch, idle_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None
        self._lifelines: dict[int, int] = {}
        self._stamp: list[tuple[str, float, int]] = []
        self._retired: list[subprocess.Popen[bytes]] = []
        self._failed_at = 0.0

    def _stamps(self) -> list[tuple[str, float, int]]:
        files = [f for p in self.watch for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else [])]
        return [(str(f), s.st_mtime, s.st_size) for f in files if f.is_file() and (s := f.stat())]

    def socket(self) -> Path | None:
        """The socket of a running server, started (or replaced) first if need be; None when there is none (the
        run then takes the real ansible-playbook)."""
        with self._lock:
            for gone in [p for p in self._retired if p.poll() is not None]:
                os.close(self._lifelines.pop(gone.pid))
                self._retired.remove(gone)
            if self._proc is not None and self._proc.poll() is None:
                if self._stamp == self._stamps():
                    return self._socket
                log.info("warm ansible: the inventory or a catalog module changed; a new server takes the next runs")
                self._proc.send_signal(signal.SIGUSR1)   # finish its runs, then go
                self._retired.append(self._proc)
            elif self._proc is not None:
                (log.info if self._proc.returncode == 0 else log.warning)(
                    "warm ansible: its server ended (%s); starting another", self._proc.returncode)
                os.close(self._lifelines.pop(self._proc.pid))
            self._proc = None
            if time.monotonic() - self._failed_at < 60:   # it just failed to start: the real command meanwhile
                return None
            return self._start()

    def _start(self) -> Path | None:
        self._stamp = self._stamps()
        read, lifeline = os.pipe()   # the server ends when this process (so its end of the pipe) is gone
        where = Path(tempfile.mkdtemp(prefix="remediator-warm-"))   # short: a socket's path has 107 bytes at most
        sock = where / "warm.sock"
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.logs / "warm.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "remediator.engine.run.warm_server", str(sock), str(read),
                                     str(self.idle_s)],
                                    env={**self.env, **MITOGEN_ENV}, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True, pass_fds=(read,))
        os.close(read)
        self._lifelines[proc.pid] = lifeline
        deadline = time.monotonic() + _READY_S
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if not sock.exists():
            log.warning("warm ansible: the server did not start (see %s); runs take the real ansible-playbook",
                        self.logs / "warm.log")
            proc.kill()
            os.close(self._lifelines.pop(proc.pid))
            self._failed_at = time.monotonic()
            return None
        self._proc, self._socket = proc, sock
        return sock

    def close(self) -> None:
        """Stop the servers; runs still in them are stopped as ansible-playbook stops on SIGTERM."""
        with self._lock:
            procs = [p for p in (self._proc, *self._retired) if p is not None]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._proc, self._retired = None, []
            for lifeline in self._lifelines.values():
                os.close(lifeline)
            self._lifelines.clear()
