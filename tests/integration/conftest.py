import subprocess

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab import fleet
from remediator.engine.run.runner import AnsibleExecutor

INVENTORY = PROJECT_ROOT / "inventory" / "lab.yml"


@pytest.fixture(scope="session")
def lab_host():
    """app-server-01, fresh; the lab is taken down after the session."""
    fleet.up(INVENTORY, hosts=["app-server-01"])
    yield "app-server-01"
    fleet.down(INVENTORY)


@pytest.fixture
def executor(tmp_path) -> AnsibleExecutor:
    return AnsibleExecutor(tmp_path / "runs", INVENTORY)


def on_host(*argv: str) -> subprocess.CompletedProcess:
    """Probe the lab host directly, independent of remediator."""
    return subprocess.run(["podman", "exec", "remediator-lab-app-server-01", *argv], capture_output=True, text=True)
