"""The product as an operator installs it: the built wheel in a clean virtualenv, set up by `remediator init` in a
directory of a user who is not root, the first host added by docs/operating.md's recipe, serving with nothing of the
checkout on its path: it makes the first fix."""
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab.harness import ServeProcess, free_port
from tests.e2e.conftest import SAMPLES, on_host
from tests.lab import HOSTS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(built_wheel) -> Path:
    return built_wheel


@pytest.fixture(scope="module")
def installed(wheel) -> Iterator[Path]:
    """A clean virtualenv (not the checkout's .venv) with the wheel and its dependencies: its bin/. Readable by any
    user (not under pytest's root-only temporary tree): the operator below is not root."""
    venv = Path(tempfile.mkdtemp(prefix="rv-", dir="/tmp"))
    venv.chmod(0o755)
    # Debian's python3, as an operator's would be: one under /root (pyenv's) cannot be run by another user
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True, timeout=900)
    yield venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)


@pytest.fixture
def operator() -> Iterator[tuple[str, Path]]:
    """An account of this machine that is not root, made for the test: (its name, its home). The home is short:
    ssh's ControlPath socket lives under $HOME/.ansible/cp, and a socket's path has at most 107 bytes."""
    name = f"rop{secrets.token_hex(3)}"
    home = Path("/tmp") / name
    subprocess.run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True)
    yield name, home
    subprocess.run(["pkill", "-u", name], check=False)   # its ssh connection masters (ControlPersist)
    time.sleep(0.5)
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def test_the_wheel_holds_one_package_with_its_catalog_and_pages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"remediator", wheel.name.split("-py3")[0] + ".dist-info"}
    for needed in ("remediator/shipped/playbooks/roles/restart_service/meta/remediator.yml",
                   "remediator/shipped/playbooks/library/remediator_stop_run.py",
                   "remediator/shipped/runbooks/default.yml", "remediator/shipped/policies/default.yml",
                   "remediator/shipped/packaging/systemd/remediator.service",
                   "remediator/api/templates/approval.html", "remediator/engine/decide/prompts/llm_system.j2",
                   "remediator/shipped/docs/operating.md", "remediator/shipped/docs/engine.md"):
        assert needed in names


def test_an_operator_not_root_installs_inits_follows_the_first_host_recipe_and_gets_the_first_fix(installed, operator,
                                                                                                   lab_fleet):
    """docs/operating.md, "The first host", followed as written (its code blocks, with this host's address, port and
    the path init wrote in place of the examples), as a user other than root, from the installed wheel, against a
    lab host that has nothing of remediator's lab keys for this account."""
    user, home = operator
    env = {"PATH": f"{installed}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "USER": user}

    def as_operator(argv: list[str], **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env={**env, **extra}, cwd=home, user=user, group=user, extra_groups=[],
                              capture_output=True, text=True, timeout=180)

    where = as_operator(["python", "-c", "import remediator; print(remediator.__file__)"]).stdout
    assert where.startswith(str(installed.parent)) and "site-packages" in where

    conf = home / "conf"
    init = as_operator(["remediator", "init", str(conf)])
    assert init.returncode == 0, init.stderr
    assert (conf / "remediator.yml").stat().st_uid != 0
    docs = re.search(r"the first host, step by step: (\S+)", init.stdout)   # the docs came with the wheel
    assert docs and Path(docs.group(1)).is_file() and str(installed.parent) in docs.group(1), init.stdout
    host = HOSTS["api-server-01"]
    gateway = on_host(host.name, "ip", "route", "show", "default").stdout.split()[2]   # where remediator comes from
    alert = home / "alert.json"   # the operator's own copy: the checkout may be where no other user can read
    shutil.copy(SAMPLES / "alertmanager-firing-grouped.json", alert)
    shutil.chown(alert, user, user)
    mine, theirs, inventory, tries = _recipe({"DIR": str(conf), "-p 2222 10.0.2.11": f"-p {host.ssh_port} 127.0.0.1",
                                              "10.0.0.5": gateway, "alert.json": str(alert)})

    done = as_operator(["sh", "-ec", mine])
    assert done.returncode == 0, done.stderr
    assert "api-server-01" in done.stdout and "ED25519" in done.stdout   # the pinned key's fingerprint
    subprocess.run(["podman", "cp", str(conf / "ssh" / "id_ed25519.pub"), f"{host.container}:/root/"], check=True)
    done = subprocess.run(["podman", "exec", "-w", "/root", host.container, "sh", "-ec", theirs],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    tree = yaml.safe_load((conf / "inventory.yml").read_text())
    for group in tree["all"]["children"].values():   # the example's hosts out, this one in
        group.pop("hosts", None)
    ours = yaml.safe_load(inventory.replace("10.0.2.11", "127.0.0.1").replace("2222", str(host.ssh_port)))
    tree["all"]["children"]["api"]["hosts"] = ours["all"]["children"]["api"]["hosts"]
    (conf / "inventory.yml").write_text(yaml.safe_dump(tree, sort_keys=False))

    on_host(host.name, "systemctl", "stop", "api-gateway")
    port = free_port()
    served = {"REMEDIATOR_CONFIG": str(conf / "remediator.yml"), "REMEDIATOR_PORT": str(port),
              "REMEDIATOR_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    try:
        ping, plan = (as_operator(["sh", "-ec", line], **served) for line in tries.strip().splitlines())
        assert ping.returncode == 0 and '"ping": "pong"' in ping.stdout, ping.stdout + ping.stderr
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "proposal: restart_service" in plan.stdout and "policy:   allow" in plan.stdout, plan.stdout
        assert on_host(host.name, "systemctl", "is-active", "api-gateway").stdout.strip() == "inactive"  # a dry run only

        settings = yaml.safe_load((conf / "remediator.yml").read_text())
        serve = ServeProcess({**env, **served}, port, home / "serve.log", cwd=home, inherit_env=False,
                             argv=["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "remediator", "serve"])
        try:
            client = httpx.Client(base_url=serve.url, headers={"Authorization": f"Bearer {settings['tokens'][0]}"},
                                  timeout=30)
            r = client.post("/webhook/alertmanager", content=(SAMPLES / "alertmanager-firing-grouped.json").read_bytes(),
                            headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
            fixed = _wait_fixed(client, r.json()["delivery"], serve)
            assert fixed["proposal"]["entry"] == "restart_service" and fixed["decision"]["verdict"] == "allow"
            assert on_host(host.name, "systemctl", "is-active", "api-gateway").stdout.strip() == "active"
        finally:
            serve.stop()
        # as that account: through sudo on the host, from the key and host key the recipe made
        assert on_host(host.name, "sh", "-c", "journalctl -q _COMM=sudo | grep -c 'USER=root'").stdout.strip() != "0"
        # its store and runs are under the tree init wrote, owned by the operator
        data = conf / "var"
        assert (data / "remediator.db").is_file() and (data / "remediator.db").stat().st_uid != 0
        assert any((data / "runs").iterdir())
        assert as_operator(["remediator", "audit", "verify"], **served).returncode == 0
        assert as_operator(["remediator", "db", "current"], **served).returncode == 0
    finally:
        on_host(host.name, "systemctl", "start", "api-gateway")
        on_host(host.name, "sh", "-c", "userdel --remove remediator; rm -f /etc/sudoers.d/remediator /root/id_ed25519.pub")


def _recipe(examples: dict[str, str]) -> list[str]:
    """The code blocks of docs/operating.md's "The first host", in order, with `examples` replaced (whole words)."""
    doc = (PROJECT_ROOT / "docs" / "operating.md").read_text()
    section = doc[doc.index("### The first host"):doc.index("\n## ", doc.index("### The first host"))]
    blocks = re.findall(r"```(?:sh|yaml)\n(.*?)```", section, re.S)
    assert len(blocks) == 4, blocks
    pattern = re.compile("|".join(rf"(?<![\w.-]){re.escape(k)}(?![\w.-])" for k in examples))
    return [pattern.sub(lambda m: examples[m.group(0)], b) for b in blocks]


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

