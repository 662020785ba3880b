import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.standins import Receivers

REMEDIATOR = Path(sys.executable).parent / "remediator"


@pytest.fixture(scope="module")
def lab_fleet(lab, request):
    """The hosts a chaos module names in LAB_HOSTS (default: app-server-01 and api-server-01), booted fresh for it,
    and the Slack/PagerDuty stand-ins; the module breaks them on purpose, so the next module gets them fresh too."""
    hosts = getattr(request.module, "LAB_HOSTS", ["app-server-01", "api-server-01"])
    lab.use(hosts, fresh=True)
    with Receivers() as receivers:
        yield receivers
    lab.used(hosts)


@pytest.fixture(scope="module")
def lab_chain(tmp_path_factory, lab):
    """`remediator lab up` for the module: this worker's lab instance with its own Prometheus and Alertmanager, a data
    dir and ports of the module's own, Slack and PagerDuty stand-ins; (the environment, the data dir, the stand-ins).
    `lab down` afterwards must stop the monitoring too."""
    receivers = Receivers()
    data = tmp_path_factory.mktemp("chaos")
    env = {**os.environ, "REMEDIATOR_DATA_DIR": str(data), "REMEDIATOR_INVENTORY": str(lab.inventory),
           "REMEDIATOR_TOKENS": "chaos:0123456789abcdefghijklmn",
           "REMEDIATOR_PORT": str(free_port()), "REMEDIATOR_LAB_PROMETHEUS_PORT": str(free_port()),
           "REMEDIATOR_LAB_ALERTMANAGER_PORT": str(free_port()),
           "REMEDIATOR_SLACK_WEBHOOK_URL": f"{receivers.url}/slack",
           "REMEDIATOR_PAGERDUTY_URL": f"{receivers.url}/pagerduty",
           "REMEDIATOR_PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY0123456789abcdefABCDEF"}
    up = subprocess.run([str(REMEDIATOR), "lab", "up"], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    yield env, data, receivers
    down = subprocess.run([str(REMEDIATOR), "lab", "down"], env=env, capture_output=True, text=True, timeout=300)
    lab.used()
    receivers.close()
    assert down.returncode == 0, down.stderr
    assert "stopped prometheus, alertmanager" in down.stdout
