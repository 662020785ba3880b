"""The lab is reached the way docs tell operators to reach a fleet: the same SSH run settings in
inventory/lab.yml and inventory/example-ssh.yml, host keys checked in both, and every lab host on its own
loopback port (one address for all of them names none: tests/security/test_targets.py)."""
import pytest
import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.lab.fleet import lab_hosts

pytestmark = pytest.mark.unit
LAB = PROJECT_ROOT / "inventory" / "lab.yml"
FLEET = PROJECT_ROOT / "inventory" / "example-ssh.yml"


def _vars(path):
    return yaml.safe_load(path.read_text())["all"]["vars"]


def test_the_lab_and_the_example_fleet_share_the_ssh_run_settings():
    lab, fleet = _vars(LAB), _vars(FLEET)
    assert lab["ansible_connection"] == fleet["ansible_connection"] == "ssh"
    assert lab["ansible_ssh_args"] == fleet["ansible_ssh_args"]
    assert "ControlPersist=" in lab["ansible_ssh_args"] and "ControlMaster=auto" in lab["ansible_ssh_args"]
    for v in (lab, fleet):
        assert "StrictHostKeyChecking=yes" in v["ansible_ssh_common_args"]
        assert "UserKnownHostsFile=" in v["ansible_ssh_common_args"]


def test_every_lab_host_has_its_own_loopback_ports():
    hosts = lab_hosts(LAB)
    assert len({h.ssh_port for h in hosts}) == len({h.port for h in hosts}) == len(hosts) == 4
    assert {h.container for h in hosts} == {f"remediator-lab-{h.name}" for h in hosts}
    assert _vars(LAB)["ansible_host"] == "127.0.0.1"


def test_a_lab_host_without_its_ssh_port_is_refused_naming_it(tmp_path):
    from remediator.engine.errors import ConfigError
    (tmp_path / "lab.yml").write_text("all:\n  hosts:\n    web-1: {lab_port: 18081}\n")
    with pytest.raises(ConfigError, match="lab host web-1 has no ansible_port"):
        lab_hosts(tmp_path / "lab.yml")
