"""An engine's ansible-playbook dies with the engine (remediator/engine/run/tether.py): a process that starts a
real ansible-playbook (a local play that would run for five minutes) through ansible-runner, as AnsibleExecutor does,
is SIGKILLed; nothing of the run may outlive it. Without the tether the same play goes on with parent PID 1."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ENGINE = """
import os, sys, ansible_runner
from pathlib import Path
from remediator.engine.run.runner import run_env
from remediator.engine.run.tether import WARM_ENV, tether_dir
runs, tethered, seconds = Path(sys.argv[1]), sys.argv[2] in ("tethered", "warm"), sys.argv[3]
project = runs / "project"
project.mkdir(parents=True)
(runs / "run").mkdir()
(project / "long.yml").write_text("- hosts: localhost\\n  gather_facts: false\\n  tasks:\\n"
                                  f"    - ansible.builtin.command: sleep {seconds}\\n")
bare = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}   # as the engine ran it before the tether
env = run_env(tether_dir(runs)) if tethered else bare
if sys.argv[2] == "warm":   # the run as a fork of the engine's warm Ansible (run/warm.py)
    from remediator.engine.run.runner import AnsibleExecutor
    (runs / "inventory.yml").write_text("all: {}\\n")
    env[WARM_ENV] = str(AnsibleExecutor(runs / "executor", runs / "inventory.yml").warm.socket())
ansible_runner.run(private_data_dir=str(runs / "run"), project_dir=str(project), playbook="long.yml",
                   inventory=f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}", quiet=True, envvars=env)
"""


def _processes_of(*markers: bytes) -> list[int]:
    """The pids whose command line holds one of these: the run's directory (ansible-playbook and its forks read
    -e @<dir>/env/extravars) or the task's own `sleep <seconds>`."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(m in cmdline for m in markers):
            found.append(int(pid))
    return found


def _killed_mid_run(tmp_path: Path, mode: str) -> tuple[bytes, bytes]:
    """Start the engine, wait for the play's task to run, SIGKILL the engine; the run's markers."""
    runs, seconds = tmp_path / mode, f"300.{random.randrange(10**6):06d}"
    engine = subprocess.Popen([sys.executable, "-c", ENGINE, str(runs), mode, seconds])
    markers = (str(runs / "run").encode(), f"sleep\0{seconds}".encode())
    deadline = time.monotonic() + 60
    while not _processes_of(markers[1]):
        assert engine.poll() is None, f"the engine ended ({engine.returncode})"
        assert time.monotonic() < deadline, "the play's task did not start within 60 s"
        time.sleep(0.2)
    assert _processes_of(markers[0])
    engine.send_signal(signal.SIGKILL)
    engine.wait(10)
    return markers


def _left_after(markers: tuple[bytes, bytes], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _processes_of(*markers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_a_sigkilled_engine_takes_its_ansible_playbook_its_forks_and_their_task_with_it(tmp_path):
    markers = _killed_mid_run(tmp_path, "tethered")
    assert _left_after(markers, 10) == []


def test_a_sigkilled_engine_takes_its_warm_ansible_run_and_its_task_with_it(tmp_path):
    markers = _killed_mid_run(tmp_path, "warm")
    assert _left_after(markers, 10) == []
    warm = (tmp_path / "warm" / "executor" / ".warm" / "warm.log").read_text()
    assert "run " in warm and "not warm" not in warm, warm   # it was the warm server's run, and it stopped
    assert "stopped" in warm, warm


def test_without_the_tether_the_run_outlives_its_engine(tmp_path):
    """The control: what the kill tests found (issue 34), so that the test above can fail."""
    markers = _killed_mid_run(tmp_path, "bare")
    try:
        assert _left_after(markers, 3) != []
    finally:
        for pid in _processes_of(*markers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
