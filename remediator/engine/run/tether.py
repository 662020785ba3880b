"""A run's ansible processes die with the engine that started them, whatever ends it: SIGKILL, OOM, a crash.

ansible-runner starts ansible-playbook through pexpect, in a session of its own with SIGHUP ignored: nothing tied
it to its engine, and a SIGKILLed engine's real run went on acting on hosts that another replica had taken over.
So every ansible command an engine runs is started through a tether (`tether_dir()`, first on the run's PATH):
a few lines that ask the kernel to send SIGTERM when the thread that started the process ends (PR_SET_PDEATHSIG,
kept across exec), and then exec the real command. SIGTERM, not SIGKILL: Ansible's forks each run in a session
of their own (WorkerProcess setsid), out of reach of a signal to the group, and ansible-playbook's own SIGTERM
handler ends them, and the tasks they run, before it exits. (SIGHUP stays ignored, as pexpect set it: the engine's
end also hangs up the run's terminal, and a SIGHUP delivered first would end ansible-playbook before it told its
forks.) The engine's pid is
handed in (REMEDIATOR_TETHER_PARENT): a tether whose engine died before it was set up exits at once.

With a warm Ansible (run/warm.py, REMEDIATOR_WARM_SOCKET set), the ansible-playbook tether does not exec: it hands
its terminal, arguments, environment and directory to the warm process, which answers "+" once it has forked the
run, passes on the SIGTERM and SIGINT it gets, and exits with the run's status. Not answered "+" (no server, or one
going away), it execs the real ansible-playbook as above.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

#: the commands ansible-runner starts (ansible-playbook for runs, ansible for remediator_stop_run)
COMMANDS = ("ansible-playbook", "ansible")
PARENT_ENV = "REMEDIATOR_TETHER_PARENT"
#: the socket of the engine's warm Ansible (run/warm.py), when it has one
WARM_ENV = "REMEDIATOR_WARM_SOCKET"

_SCRIPT = '''#!{python} -IS
# remediator's tether (remediator/engine/run/tether.py): dies with the engine that started it, then becomes {real}
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
if str(os.getppid()) != os.environ.get("{parent_env}"):
    sys.exit("remediator's engine is gone: not starting {name}")
warm = os.environ.get("{warm_env}") if {name!r} == "ansible-playbook" else None
if warm:   # a warm Ansible (run/warm.py) runs it as a fork of itself; this process stands in for it
    import json, socket, struct
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(warm)
        body = json.dumps({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
        socket.send_fds(conn, [struct.pack("!I", len(body))], [0, 1, 2])
        conn.sendall(body)
    except OSError:
        conn = None   # no warm server: the real command, as always
    if conn is not None:
        got_signals = []

        def forward(signum, _frame, letters={{signal.SIGTERM: b"T", signal.SIGINT: b"I"}}):
            got_signals.append(signum)
            try:
                conn.send(letters[signum])
            except OSError:
                pass
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        answer = b""
        while True:
            try:
                got = conn.recv(256)
            except InterruptedError:
                continue
            except OSError:
                got = b""
            if not got:
                break
            answer += got
        if not answer.startswith(b"+"):   # never taken (the server was going away): nothing of the run started
            if got_signals:
                sys.exit("{name} was stopped before it started")
            conn = None
    if conn is not None:
        status = json.loads(answer[1:] or b'{{"status": 70}}')["status"]
        if status < 0:
            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        sys.exit(status)
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
'''


def tether_dir(runs_dir: Path) -> Path:
    """The directory of tethers for this installation's ansible commands (written once per engine); put it first
    on PATH and PARENT_ENV (this process's pid) in the environment of every ansible-runner call."""
    where = runs_dir / ".tether"
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for name in COMMANDS:
        real = shutil.which(name, path=search)
        if real is None:   # ansible-runner reports the missing command itself, as it always did
            continue
        script = _SCRIPT.format(python=sys.executable, real=real, name=name, parent_env=PARENT_ENV,
                                 warm_env=WARM_ENV)
        path = where / name
        if not path.is_file() or path.read_text() != script:
            tmp = where / f".{name}.{os.getpid()}"
            tmp.write_text(script)
            tmp.chmod(0o700)
            tmp.replace(path)
    return where
