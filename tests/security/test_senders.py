"""Finding 8: any person's token, even a viewer's, could post webhooks, so a viewer could trigger fixes and an
approver could post an alert and approve what it created. Alerts come with a service token only."""
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine import PROJECT_ROOT
from engine.service import Engine
from engine.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.unit]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()


@pytest.mark.parametrize("role", ["viewer", "approver", "admin"])
def test_a_persons_token_cannot_post_alerts(tmp_path, role):
    engine = Engine(Settings(data_dir=tmp_path, tokens=["service-token"]))
    _, token = engine.identities.add("pat", role)
    with TestClient(create_app(engine, start_engine=False)) as client:
        r = client.post("/webhook/alertmanager", content=SAMPLE,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert r.status_code == 403 and "service token" in r.json()["detail"]
        ok = client.post("/webhook/alertmanager", content=SAMPLE,     # the control: the service token posts
                         headers={"Authorization": "Bearer service-token", "Content-Type": "application/json"})
        assert ok.status_code == 200
