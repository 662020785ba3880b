"""The warm Ansible's idle clock (run/warm_server.py) starts when the server is ready, not before its imports: a
server whose start took longer than its idle time must not end before it took a single run."""
import os

import pytest

from remediator.engine.run.warm import WarmAnsible

pytestmark = pytest.mark.unit


def test_a_server_slower_to_start_than_its_idle_time_is_there_for_the_run_that_started_it(tmp_path):
    # Importing ansible-core and mitogen takes over a second; the idle time here is a fraction of that. Before the
    # fix the server ended the moment it was ready, and the engine found no socket ("did not start", seen on CI).
    warm = WarmAnsible(tmp_path / "logs", dict(os.environ), tmp_path, watch=[], idle_s=0.5)
    try:
        sock = warm.socket()
        log = (tmp_path / "logs" / "warm.log").read_text()
        assert sock is not None, log
        assert warm._proc is not None and warm._proc.wait(30) == 0       # and then it ends, idle
        log = (tmp_path / "logs" / "warm.log").read_text()
        assert log.index("ready:") < log.index("idle for 0.5 s"), log
    finally:
        warm.close()
