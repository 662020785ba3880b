"""Finding 7: the runner set ANSIBLE_HOST_KEY_CHECKING=False, overriding an inventory's StrictHostKeyChecking
(ansible-runner turns it off by default). The environment ansible-runner really builds for a run keeps it on."""
import re

import ansible_runner
import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import load_catalog
from remediator.engine.run.runner import AnsibleExecutor
from tests.lab import INVENTORY

pytestmark = pytest.mark.security


@pytest.mark.unit
def test_host_key_checking_stays_on_in_the_runs_environment(tmp_path, monkeypatch):
    seen = {}

    def capture(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("captured")   # the run itself is not the point; its configuration is

    monkeypatch.setattr(ansible_runner, "run", capture)
    catalog = load_catalog(PROJECT_ROOT / "playbooks")
    AnsibleExecutor(tmp_path / "runs", PROJECT_ROOT / "inventory" / "lab.yml").run(
        catalog.get("service_status"), {"unit": "webapp"}, ["app-server-01"], check=True, ident="t", timeout_s=30)
    config = ansible_runner.RunnerConfig(private_data_dir=str(tmp_path / "pdd"), playbook="x.yml",
                                         envvars=seen["envvars"], suppress_env_files=True)
    config.prepare()
    assert config.env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    # and without the engine's word, ansible-runner would have turned it off: the test can fail
    bare = ansible_runner.RunnerConfig(private_data_dir=str(tmp_path / "bare"), playbook="x.yml", suppress_env_files=True)
    bare.prepare()
    assert bare.env["ANSIBLE_HOST_KEY_CHECKING"] == "False"


@pytest.mark.integration
def test_a_host_whose_key_is_not_the_pinned_one_is_never_worked(catalog, lab_host, tmp_path):
    """The lab is reached over SSH with each host's key pinned: a known_hosts that pins another key for
    app-server-01 (as a host, or a man in the middle, presenting a new key would look) stops the run before
    any task; the same run with the true file works, so the test can fail. Each run logs in afresh: a kept
    connection (ControlPersist, the warm Ansible's) was checked when it was made, and is not what this test is
    about: each executor here has a warm Ansible of its own."""
    from remediator.engine.lab.fleet import SSH_DIR
    from remediator.engine.model.records import RunStatus
    for name, pinned in (("true", SSH_DIR / "known_hosts"), ("forged", None)):
        root = tmp_path / name
        (root / "inventory").mkdir(parents=True)
        (root / "var" / "lab-ssh").mkdir(parents=True)
        # this lab's inventory, with no kept connection and pins of its own
        inventory = yaml.safe_load(INVENTORY.read_text().replace("{{ inventory_dir }}/..", str(PROJECT_ROOT)))
        lab_vars = inventory["all"]["vars"]
        lab_vars.update(ansible_ssh_args="", ansible_ssh_private_key_file=str(SSH_DIR / "id_ed25519"),
                        ansible_ssh_common_args=re.sub(r"UserKnownHostsFile=\S+", f"UserKnownHostsFile={root}/var/lab-ssh/known_hosts",
                                                       lab_vars["ansible_ssh_common_args"]))
        (root / "inventory" / "lab.yml").write_text(yaml.safe_dump(inventory, width=1000))
        lines = (SSH_DIR / "known_hosts").read_text().splitlines()
        if pinned is None:   # app-server-01 pinned to app-server-02's key
            other = next(line for line in lines if line.startswith("app-server-02 ")).split(" ", 1)[1]
            lines = [f"app-server-01 {other}" if line.startswith("app-server-01 ") else line for line in lines]
        (root / "var" / "lab-ssh" / "known_hosts").write_text("\n".join(lines) + "\n")
        entry = catalog.get("service_status")
        run = AnsibleExecutor(root / "runs", root / "inventory" / "lab.yml").run(
            entry, entry.validate_params({"unit": "webapp"}), [lab_host], check=True, ident=name, timeout_s=60)
        if name == "true":
            assert run.status == RunStatus.SUCCESSFUL, run.preview.summary
        else:
            assert run.status == RunStatus.FAILED and run.preview.hosts[0].unreachable, run.preview.summary
            assert "Host key verification failed" in run.preview.summary or \
                "REMOTE HOST IDENTIFICATION HAS CHANGED" in run.preview.summary or \
                "mismatching host key" in run.preview.summary, run.preview.summary   # ssh's words, or mitogen's
