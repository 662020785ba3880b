"""The OCI image as an operator runs it: built with podman from the wheel (packaging/image), `remediator serve` as
a non-root user with the operator's tree and SSH key mounted and its data on a volume; healthy by its own
healthcheck, it makes the first fix on the lab."""
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.config_tree import init_tree
from remediator.engine.lab.fleet import SSH_DIR
from remediator.engine.lab.harness import free_port
from tests.e2e.conftest import INVENTORY, SAMPLES, on_host

pytestmark = pytest.mark.e2e
UID = 10001   # the image's user (packaging/image/Containerfile)


def _podman(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def image(built_wheel) -> str:
    tag = "localhost/remediator:e2e"
    built = subprocess.run(["bash", str(PROJECT_ROOT / "packaging" / "image" / "build.sh"), str(built_wheel), tag],
                           capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert built.returncode == 0, built.stdout + built.stderr
    yield tag
    _podman("rmi", "-f", tag, check=False)


@pytest.fixture
def tree(tmp_path) -> Path:
    """The operator's tree for the container: the lab as its inventory, the lab's key and known hosts beside it,
    owned by the image's user (a 0600 key of root's is not readable by it)."""
    conf = tmp_path / "conf"
    report = init_tree(conf)
    ssh = conf / "ssh"
    ssh.mkdir()
    for name in ("id_ed25519", "known_hosts"):
        shutil.copy(SSH_DIR / name, ssh / name)
    lab = INVENTORY.read_text().replace("{{ inventory_dir }}/..", str(PROJECT_ROOT)).replace(str(SSH_DIR), "/etc/remediator/ssh")
    (conf / "inventory.yml").write_text(lab)
    settings = yaml.safe_load(report.config.read_text())
    settings.pop("data_dir")   # the image's: /var/lib/remediator, the volume
    report.config.write_text(yaml.safe_dump(settings))
    for path in [conf, *conf.rglob("*")]:
        shutil.chown(path, UID, UID)
    return conf


def test_the_image_serves_as_non_root_is_healthy_and_makes_the_first_fix(image, tree, lab_fleet):
    name, volume, port = f"remediator-e2e-{uuid.uuid4().hex[:8]}", f"remediator-e2e-data-{uuid.uuid4().hex[:8]}", free_port()
    token = yaml.safe_load((tree / "remediator.yml").read_text())["tokens"][0]
    on_host("api-server-01", "systemctl", "stop", "api-gateway")
    # the host's network: the lab's hosts are reached on 127.0.0.1 (their sshd is published on loopback only)
    _podman("run", "-d", "--name", name, "--network", "host", "-e", f"REMEDIATOR_PORT={port}",
            "-e", "REMEDIATOR_HOST=127.0.0.1", "-v", f"{tree}:/etc/remediator:ro", "-v", f"{volume}:/var/lib/remediator",
            image)
    try:
        deadline = time.monotonic() + 90
        while _podman("healthcheck", "run", name, check=False).returncode != 0:
            assert time.monotonic() < deadline, _podman("logs", name, check=False).stdout[-3000:]
            time.sleep(1)
        assert _podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy"
        assert _podman("exec", name, "id", "-u").stdout.strip() == str(UID)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r = client.post("/webhook/alertmanager", content=(SAMPLES / "alertmanager-firing-grouped.json").read_bytes(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        fixed = _wait_fixed(client, r.json()["delivery"], name)
        assert fixed["proposal"]["entry"] == "restart_service"
        assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() == "active"
        # its data is on the volume, not in the image's layer
        listed = _podman("exec", name, "ls", "/var/lib/remediator").stdout.split()
        assert "remediator.db" in listed and "runs" in listed
        assert _podman("exec", name, "remediator", "audit", "verify").returncode == 0
    finally:
        _podman("rm", "-f", "-t", "10", name, check=False)
        _podman("volume", "rm", "-f", volume, check=False)
        on_host("api-server-01", "systemctl", "start", "api-gateway")


def _wait_fixed(client: httpx.Client, delivery: int, name: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    detail: dict = {}
    while time.monotonic() < deadline:
        for incident in client.get(f"/deliveries/{delivery}").json().get("incidents") or []:
            detail = client.get(f"/incidents/{incident}").json()
            if detail["host"] == "api-server-01" and detail["state"] in {"resolved", "escalated", "failed", "denied"}:
                assert detail["state"] == "resolved", (detail["reason"], _podman("logs", name, check=False).stdout[-3000:])
                return detail
        time.sleep(0.5)
    raise AssertionError(f"not fixed within {timeout_s} s: {detail.get('state')}")
