"""Finding 7: the runner set ANSIBLE_HOST_KEY_CHECKING=False, overriding an inventory's StrictHostKeyChecking
(ansible-runner turns it off by default). The environment ansible-runner really builds for a run keeps it on."""
import ansible_runner
import pytest

from engine import PROJECT_ROOT
from engine.catalog.loader import load_catalog
from engine.run.runner import AnsibleExecutor

pytestmark = [pytest.mark.security, pytest.mark.unit]


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
