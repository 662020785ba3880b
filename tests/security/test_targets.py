"""Finding 6: when `instance` did not resolve exactly (an IP, a trailing dot, another case, a homoglyph), the `host`
label decided: `instance=10.0.1.11:9100, host=db-primary-01` acted on db-primary-01. Every target label the alert
carries must name the same host (by name or ansible_host, any case); otherwise a person decides."""
import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.intake.targets import host_from_labels

pytestmark = [pytest.mark.security, pytest.mark.unit]
FLEET = load_inventory(PROJECT_ROOT / "inventory" / "example-ssh.yml")   # app-server-01 is 10.0.1.11
ORDER = ["instance", "host", "nodename"]


@pytest.mark.parametrize("labels", [
    {"instance": "10.0.1.11:9100", "host": "db-primary-01"},            # the review's case: the IP is app-server-01
    {"instance": "app-server-01:9100", "host": "db-primary-01"},
    {"instance": "\u0430pp-server-01:9100", "host": "app-server-01"},    # a Cyrillic a: names no host
    {"instance": "10.9.9.9:9100", "host": "db-primary-01"},             # an address the inventory does not know
    {"instance": "app-server-01:9100", "nodename": "app-server-02"},
])
def test_disagreeing_or_unknown_target_labels_leave_the_alert_to_a_person(labels):
    host, why = host_from_labels(labels, FLEET, ORDER)
    assert host is None and "the target labels disagree" in why
    for name, value in labels.items():
        assert f"{name}={value!r}" in why


@pytest.mark.parametrize("labels,host", [
    ({"instance": "10.0.1.11:9100"}, "app-server-01"),                  # by ansible_host
    ({"instance": "APP-SERVER-01.:9100"}, "app-server-01"),             # any case, trailing dot
    ({"instance": "10.0.3.11:9187", "host": "db-primary-01", "nodename": "DB-PRIMARY-01"}, "db-primary-01"),
])
def test_the_control_agreeing_labels_name_their_host(labels, host):
    assert host_from_labels(labels, FLEET, ORDER)[0] == host


def test_an_address_several_hosts_share_names_none_of_them(tmp_path):
    """The lab reaches every host at 127.0.0.1 on its own port: `instance=127.0.0.1:9100` acted on whichever host
    came first in the inventory. An address shared by hosts names none of them; each host's own name still names it."""
    lab = load_inventory(PROJECT_ROOT / "inventory" / "lab.yml")
    host, why = host_from_labels({"instance": "127.0.0.1:18081"}, lab, ORDER)
    assert host is None and "no inventory host matches" in why
    assert host_from_labels({"instance": "app-server-02:8080"}, lab, ORDER)[0] == "app-server-02"
    # a host named like another's address: the name wins
    (tmp_path / "inv.yml").write_text("all:\n  hosts:\n    a: {ansible_host: b}\n    b: {ansible_host: 10.0.0.2}\n")
    assert host_from_labels({"instance": "b:9100"}, load_inventory(tmp_path / "inv.yml"), ORDER)[0] == "b"
