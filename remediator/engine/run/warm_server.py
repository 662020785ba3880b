"""The warm Ansible's server (run/warm.py says why): Ansible imported once, a fork of itself per run.

    python -m remediator.engine.run.warm_server SOCKET LIFELINE_FD IDLE_S    (started by WarmAnsible, not by people)

One thread, one selector: the listening socket, the lifeline (its end means the engine is gone), each run's tether
connection (the signals the tether got, or its end) and each run's pidfd (its exit). SIGUSR1: take no new runs,
exit after the last; SIGTERM, or the lifeline's end: stop the runs (SIGTERM, as ansible-playbook is stopped), exit.
IDLE_S seconds without a run: exit (its host connections closed with it; the engine starts another when needed).
"""
from __future__ import annotations

import atexit
import io
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from remediator.engine.run.warm import LIVE, MITOGEN_ENV

_HEADER = struct.Struct("!I")
_GRACE_S = 10.0   # a run told to stop gets SIGKILL after this
_SIGNALS = {"T": signal.SIGTERM, "I": signal.SIGINT}


@dataclass
class _Run:
    conn: socket.socket
    pid: int
    pidfd: int
    stopped_at: float | None = None

    def stop(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            _kill(self.pid, signal.SIGTERM)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} warm[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


class Server:
    def __init__(self, path: Path, lifeline: int, idle_s: float):
        self.path, self.lifeline, self.idle_s = path, lifeline, idle_s
        self.baseline = dict(os.environ)
        import ansible.cli.playbook  # noqa: F401 (once, here, for every run)
        import ansible.constants as C
        import ansible.executor.playbook_executor  # noqa: F401
        if os.environ.get("ANSIBLE_STRATEGY", "").startswith("mitogen"):
            import ansible.plugins.loader as loader
            loader.strategy_loader.get(os.environ["ANSIBLE_STRATEGY"], class_only=True)
            import ansible_mitogen.process
            import ansible_mitogen.strategy
            # SSH only: a task on a local connection stays a process of its run, so it ends when the run is
            # stopped (mitogen would run it in a context of its own that outlives the run)
            ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = ("ssh",)
            ansible_mitogen.process.get_classic_worker_model()   # its multiplexers: forked now, shared by every run
        self.config_file = C.CONFIG_FILE
        self.runs: dict[int, _Run] = {}
        self.draining = self.stopping = False
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The engine takes the socket's path existing for "ready": it appears only once it listens (bound under
        # another name first; between bind and listen a run's connect is refused, and that run was not warm on CI).
        binding = path.with_name(path.name + ".binding")
        self.listener.bind(str(binding))
        os.chmod(binding, 0o600)
        self.listener.listen(32)
        os.rename(binding, path)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", 0))
        self.sel.register(lifeline, selectors.EVENT_READ, ("lifeline", 0))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGUSR1, lambda *_: setattr(self, "draining", True))
        self.last_run = time.monotonic()   # idle from now: the imports above take seconds on a busy machine
        _log(f"ready: ansible imported, config {self.config_file or 'none'}, "
             f"strategy {os.environ.get('ANSIBLE_STRATEGY', 'linear')}")

    def serve(self) -> None:
        """Serve runs until told to stop, or drained."""
        while True:
            if (self.stopping or self.draining) and self.listener.fileno() >= 0:
                self.sel.unregister(self.listener)
                self.listener.close()
            if self.stopping:
                for run in self.runs.values():
                    run.stop()
            if self.runs:
                self.last_run = time.monotonic()
            elif self.stopping or self.draining:
                break
            elif time.monotonic() - self.last_run > self.idle_s:
                self.draining = True
                _log(f"idle for {self.idle_s:g} s")
                continue
            for key, _ in self.sel.select(timeout=0.5):
                what, ref = key.data
                if what == "accept":
                    self._accept()
                elif what == "lifeline":
                    if not os.read(self.lifeline, 64):
                        self.stopping = True
                        self.sel.unregister(self.lifeline)
                elif what == "tether" and ref in self.runs:   # (a run whose exit came first in this batch: gone)
                    self._from_tether(self.runs[ref])
                elif what == "exit" and ref in self.runs:
                    self._exited(self.runs.pop(ref))
            for run in self.runs.values():
                if run.stopped_at is not None and time.monotonic() - run.stopped_at > _GRACE_S:
                    _kill(run.pid, signal.SIGKILL)
        shutil.rmtree(self.path.parent, ignore_errors=True)
        _log("stopped" if self.stopping else "drained")

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():   # the socket is 0600 in a 0700 directory; this is the second lock
            _log(f"refused a connection from uid {uid}")
            conn.close()
            return
        try:
            conn.settimeout(10)
            head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
            (size,) = _HEADER.unpack(head)
            body = b""
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    raise ConnectionError("the tether went away")
                body += chunk
            request = json.loads(body)
            conn.settimeout(None)
        except (OSError, ValueError, struct.error) as exc:
            _log(f"refused a request: {exc}")
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            try:
                _become_the_run(fds, request, self.baseline, self.config_file,
                                close=[conn.fileno(), self.listener.fileno(), self.lifeline, self.sel.fileno(),
                                       *(fd for r in self.runs.values() for fd in (r.conn.fileno(), r.pidfd))])
            finally:
                os._exit(70)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(b"+")   # taken: from here on the run's end is the tether's answer
        except OSError:
            pass   # the tether is gone: its run is stopped at the first select
        run = _Run(conn=conn, pid=pid, pidfd=os.pidfd_open(pid))
        self.runs[run.pidfd] = run
        self.sel.register(run.pidfd, selectors.EVENT_READ, ("exit", run.pidfd))
        self.sel.register(conn, selectors.EVENT_READ, ("tether", run.pidfd))
        _log(f"run {pid}: {' '.join(request['argv'][1:2])} {request['argv'][-1]}")

    def _from_tether(self, run: _Run) -> None:
        try:
            got = run.conn.recv(16)
        except OSError:
            got = b""
        if not got:   # the tether is gone (killed): stop its run as ansible-playbook would be stopped
            self.sel.unregister(run.conn)
            run.stop()
        for letter in got.decode(errors="replace"):
            if letter in _SIGNALS:
                _kill(run.pid, _SIGNALS[letter])

    def _exited(self, run: _Run) -> None:
        _, status = os.waitpid(run.pid, 0)
        self.sel.unregister(run.pidfd)
        os.close(run.pidfd)
        if run.conn.fileno() in self.sel.get_map():
            self.sel.unregister(run.conn)
            try:
                run.conn.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())
            except OSError:
                pass
        run.conn.close()


def _become_the_run(fds: list[int], request: dict, baseline: dict[str, str], config_file: str | None,
                    close: list[int]) -> None:
    """In the fork: the run's terminal, directory and environment, then Ansible's own CLI (or the real command)."""
    os.setsid()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)
    for fd in close:
        os.close(fd)
    argv, env = request["argv"], request["env"]
    os.chdir(request["cwd"])
    differs = sorted(k for k in {*env, *baseline} if k.startswith("ANSIBLE_") and k not in LIVE
                     and k not in MITOGEN_ENV and env.get(k) != baseline.get(k))
    os.environ.clear()
    os.environ.update({**env, **{k: v for k, v in baseline.items() if k in MITOGEN_ENV}})
    from ansible.config.manager import find_ini_config_file
    why = (f"{', '.join(differs)} differ from the server's" if differs
           else "another ansible.cfg applies" if find_ini_config_file() != config_file else "")
    if why:
        _log(f"run {os.getpid()} is not warm, it is the real ansible-playbook: {why}")
    for i, fd in enumerate(fds):   # from here on, stdin, stdout and stderr are the run's
        os.dup2(fd, i)
        os.close(fd)
    if why:
        real = Path(sys.executable).parent / "ansible-playbook"
        os.execve(real, [str(real), *argv[1:]], env)
    import ansible.constants as C
    from ansible.config.manager import ConfigManager
    C.config = ConfigManager()   # the run's own settings: what constants.py computes at import, again
    for setting in C.config.get_configuration_definitions():
        C.set_constant(setting, C.config.get_config_value(setting, variables=vars(C)))
    if MITOGEN_ENV:
        # ansible-core deprecates strategies from outside ansible.builtin; the server's log says so once, at its
        # start. Said in every run, it would be one more event in each run's record than a run had before.
        import ansible.plugins.loader as loader
        strategies = loader.strategy_loader
        strategies.get = lambda name, *a, **kw: strategies.get_with_context(name, *a, **kw).object
    from ansible.utils.display import Display, _synchronize_textiowrapper
    display = Display()
    for name, fd in (("stdin", 0), ("stdout", 1), ("stderr", 2)):
        stream = io.TextIOWrapper(open(fd, "wb" if fd else "rb", closefd=False), encoding="utf-8",
                                  errors="surrogateescape", line_buffering=bool(fd) and os.isatty(fd))
        if fd:
            _synchronize_textiowrapper(stream, display._lock)
        setattr(sys, name, stream)
    display._set_column_width()
    sys.argv = argv
    from ansible.cli.playbook import PlaybookCLI
    code = 1
    try:
        PlaybookCLI.cli_executor(argv)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        for out in (sys.stdout, sys.stderr):
            try:
                out.flush()
            except OSError:
                pass
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    Server(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])).serve()
