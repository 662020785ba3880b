import pytest

from tests.standins import Receivers


@pytest.fixture(scope="module")
def lab_fleet(lab, request):
    """The hosts a chaos module names in LAB_HOSTS (default: app-server-01 and api-server-01), booted fresh for it,
    and the Slack/PagerDuty stand-ins; the module breaks them on purpose, so the next module gets them fresh too."""
    hosts = getattr(request.module, "LAB_HOSTS", ["app-server-01", "api-server-01"])
    lab.use(hosts, fresh=True)
    with Receivers() as receivers:
        yield receivers
    lab.used(hosts)
