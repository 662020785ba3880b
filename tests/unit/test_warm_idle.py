"""The warm Ansible's idle clock (run/warm_server.py) starts when the server is ready, not before its imports: a
server whose start took longer than its idle time must not end before it took a single run."""
import os
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


def test_a_server_slower_to_start_than_its_idle_time_is_there_for_the_run_that_started_it(tmp_path):
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text(SLOW_IMPORT)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "slow")}
    warm = WarmAnsible(tmp_path / "logs", env, tmp_path, watch=[], idle_s=2)
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
