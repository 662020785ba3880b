import subprocess

from tests.lab import INVENTORY, container

__all__ = ["INVENTORY", "on_host"]


def on_host(*argv: str) -> subprocess.CompletedProcess:
    """Probe the lab host directly, independent of remediator."""
    return subprocess.run(["podman", "exec", container("app-server-01"), *argv], capture_output=True, text=True)
