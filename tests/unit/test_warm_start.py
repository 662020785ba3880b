"""The warm Ansible's start (run/warm_server.py) on a busy machine, played by a `sitecustomize` in the server's
environment: its idle clock starts when it is ready, not before its imports (a server whose start took longer than
its idle time ended before it took a run), and its socket appears only once it listens (a run that connected in
between was refused, and was not warm)."""
import os
import socket
import time

import pytest

from remediator.engine.run.warm import WarmAnsible

pytestmark = pytest.mark.unit

#: a busy machine, played: importing Ansible's playbook CLI takes 4 s longer (the server's own start, on CI, took
#: longer than a short idle time)
SLOW_IMPORT = '''
import sys, time
class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "ansible.cli.playbook":
            time.sleep(4)
        return None
sys.meta_path.insert(0, _Slow())
'''


def _busy(tmp_path, sitecustomize: str, idle_s: float) -> WarmAnsible:
    """A WarmAnsible whose server starts with this `sitecustomize` (the busy machine it plays)."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(sitecustomize)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "slow")}
    return WarmAnsible(tmp_path / "logs", env, tmp_path, watch=[], idle_s=idle_s)


def test_a_server_slower_to_start_than_its_idle_time_is_there_for_the_run_that_started_it(tmp_path):
    warm = _busy(tmp_path, SLOW_IMPORT, idle_s=2)
    log = tmp_path / "logs" / "warm.log"
    try:
        sock = warm.socket()   # before the fix: gone the moment it was ready (CI: "did not start")
        ready = time.monotonic()
        assert sock is not None and warm._proc is not None, log.read_text()
        while sock.exists() and time.monotonic() - ready < 60:   # it takes runs until it has been idle for 2 s
            time.sleep(0.05)
        assert time.monotonic() - ready > 1.0, log.read_text()
        assert warm._proc.wait(60) == 0
        assert log.read_text().index("ready:") < log.read_text().index("idle for 2 s")
    finally:
        warm.close()


#: a busy machine between the server's bind and its listen
SLOW_LISTEN = """
import socket, time
_listen = socket.socket.listen
def listen(self, *args):
    time.sleep(3)
    return _listen(self, *args)
socket.socket.listen = listen
"""


def test_the_socket_the_engine_finds_already_listens(tmp_path):
    warm = _busy(tmp_path, SLOW_LISTEN, idle_s=60)
    try:
        sock = warm.socket()
        assert sock is not None, (tmp_path / "logs" / "warm.log").read_text()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as run:
            run.connect(str(sock))   # before the fix: ConnectionRefusedError for those 3 s
    finally:
        warm.close()
