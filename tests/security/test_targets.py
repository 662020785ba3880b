"""Finding 6: when `instance` did not resolve exactly (an IP, a trailing dot, another case, a homoglyph), the `host`
label decided: `instance=10.0.1.11:9100, host=db-primary-01` acted on db-primary-01. Every target label the alert
carries must name the same host (by name or ansible_host, any case); otherwise a person decides."""
import pytest

from engine import PROJECT_ROOT
from engine.intake.targets import host_from_labels, load_inventory

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
