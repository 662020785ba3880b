"""The product as an operator installs it: the built wheel in a clean virtualenv, set up by `remediator init`,
serving from a directory outside the checkout, with nothing of the checkout on its path, makes the first fix."""
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab.harness import ServeProcess, free_port
from tests.e2e.conftest import INVENTORY, SAMPLES, on_host

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(built_wheel) -> Path:
    return built_wheel


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A clean virtualenv (not the checkout's .venv) with the wheel and its dependencies: its bin/."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True, timeout=900)
    return venv / "bin"


def test_the_wheel_holds_one_package_with_its_catalog_and_pages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"remediator", wheel.name.split("-py3")[0] + ".dist-info"}
    for needed in ("remediator/shipped/playbooks/roles/restart_service/meta/remediator.yml",
                   "remediator/shipped/playbooks/library/remediator_stop_run.py",
                   "remediator/shipped/runbooks/default.yml", "remediator/shipped/policies/default.yml",
                   "remediator/shipped/packaging/systemd/remediator.service",
                   "remediator/api/templates/approval.html", "remediator/engine/decide/prompts/llm_system.j2"):
        assert needed in names


def test_the_installed_wheel_makes_the_first_fix_from_outside_the_checkout(installed, tmp_path, lab_fleet):
    # short: ssh's ControlPath socket lives under $HOME/.ansible/cp, and a socket's path has at most 107 bytes
    home = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    remediator = str(installed / "remediator")

    def run(*argv: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([remediator, *argv], env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    where = subprocess.run([str(installed / "python"), "-c", "import remediator; print(remediator.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.parent)) and "site-packages" in where

    assert run("init", "conf").returncode == 0
    config = tmp_path / "conf" / "remediator.yml"
    # the lab's fleet as this operator's inventory: its hosts, keys and allow-lists
    lab = INVENTORY.read_text().replace("{{ inventory_dir }}/..", str(PROJECT_ROOT))
    (tmp_path / "conf" / "inventory.yml").write_text(lab)
    port = free_port()
    settings = yaml.safe_load(config.read_text())
    settings.update(port=port, public_url=f"http://127.0.0.1:{port}")
    config.write_text(yaml.safe_dump(settings))
    env["REMEDIATOR_CONFIG"] = str(config)
    listed = run("catalog", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "restart_service" in listed.stdout

    on_host("api-server-01", "systemctl", "stop", "api-gateway")
    serve = ServeProcess(env, port, tmp_path / "serve.log", argv=[remediator, "serve"], cwd=tmp_path, inherit_env=False)
    try:
        client = httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {settings['tokens'][0]}"}, timeout=30)
        r = client.post("/webhook/alertmanager", content=(SAMPLES / "alertmanager-firing-grouped.json").read_bytes(),
                        headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        fixed = _wait_fixed(client, r.json()["delivery"], serve)
        assert fixed["proposal"]["entry"] == "restart_service" and fixed["decision"]["verdict"] == "allow"
        assert on_host("api-server-01", "systemctl", "is-active", "api-gateway").stdout.strip() == "active"
    finally:
        serve.stop()
        on_host("api-server-01", "systemctl", "start", "api-gateway")
        shutil.rmtree(home, ignore_errors=True)
    # its store and runs are under the tree init wrote, none in the checkout
    assert (tmp_path / "conf" / "var" / "remediator.db").is_file()
    assert any((tmp_path / "conf" / "var" / "runs").iterdir())
    assert run("audit", "verify").returncode == 0
    assert run("db", "current").returncode == 0


def _wait_fixed(client: httpx.Client, delivery: int, serve: ServeProcess, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    detail: dict = {}
    while time.monotonic() < deadline:
        taken = client.get(f"/deliveries/{delivery}").json()
        for incident in taken.get("incidents") or []:
            detail = client.get(f"/incidents/{incident}").json()
            if detail["host"] == "api-server-01" and detail["state"] in {"resolved", "escalated", "failed", "denied"}:
                assert detail["state"] == "resolved", (detail["reason"], serve.tail())
                return detail
        time.sleep(0.5)
    raise AssertionError(f"not fixed within {timeout_s} s: {detail.get('state')} {serve.tail()}")

