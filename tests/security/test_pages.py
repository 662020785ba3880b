"""Part of finding 17: the approval pages accepted a POST with no Origin or `Origin: null` (a sandboxed frame or a
data: page on another site can send one), had no login CSRF (another site could log a browser in as the attacker,
whose later approvals would then be the attacker's), and logging out only deleted the cookie: a copy of it still
opened the pages and decided. Each is now refused, shown here as the attack."""
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remediator.api.app import create_app
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.tables import Incident
from tests.engines import new_engine
from tests.unit.test_approvals import PREVIEW, login_csrf, waiting

pytestmark = [pytest.mark.security, pytest.mark.unit]
SITE = "http://remediator.example"


@pytest.fixture
def engine(tmp_path):
    return new_engine(Settings(data_dir=tmp_path, tokens=["service-token-0123456789ab"], public_url=SITE))


def _client(engine) -> TestClient:
    return TestClient(create_app(engine, start_engine=False), base_url=SITE, headers={"Origin": SITE})


def _login(client: TestClient, token: str) -> None:
    r = client.post("/ui/login", data={"token": token, "login_csrf": login_csrf(client)}, follow_redirects=False)
    assert r.status_code == 303, r.text


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _state(engine, incident_id) -> str:
    with engine.store.read() as s:
        return s.execute(select(Incident.state).where(Incident.id == incident_id)).scalar_one()


@pytest.mark.parametrize("origin", [None, "null"])
def test_a_decision_posted_with_no_origin_or_a_null_one_is_refused(engine, origin):
    incident_id, approval_id = waiting(engine)
    _, token = engine.identities.add("alice", "approver")
    with _client(engine) as client:
        _login(client, token)
        csrf = _csrf(client.get(f"/ui/approvals/{approval_id}").text)
        headers = {"Origin": origin} if origin else {}
        if origin is None:
            del client.headers["Origin"]
        r = client.post(f"/ui/approvals/{approval_id}/approve", data={"csrf": csrf, "digest": PREVIEW.digest},
                        headers=headers)
        assert r.status_code == 403 and "is refused" in r.text
        assert _state(engine, incident_id) == IncidentState.AWAITING_APPROVAL
        client.headers["Origin"] = SITE                                   # the control: from its own page it works
        ok = client.post(f"/ui/approvals/{approval_id}/approve", data={"csrf": csrf, "digest": PREVIEW.digest},
                         follow_redirects=False)
        assert ok.status_code == 303 and _state(engine, incident_id) == IncidentState.APPROVED


def test_a_login_forced_from_another_page_is_refused(engine):
    """Login CSRF: a form elsewhere posts the attacker's own token to /ui/login (no login form token, or its own)."""
    _, mallory = engine.identities.add("mallory", "approver")
    with _client(engine) as client:
        forced = client.post("/ui/login", data={"token": mallory}, follow_redirects=False)
        assert forced.status_code == 403 and "log in again" in forced.text
        assert "remediator_session" not in forced.headers.get("set-cookie", "")
        guessed = client.post("/ui/login", data={"token": mallory, "login_csrf": "made-up"}, follow_redirects=False)
        assert guessed.status_code == 403
        assert client.get("/ui/approvals", follow_redirects=False).status_code == 303     # still not logged in


def test_a_copied_session_cookie_is_dead_after_logout(engine):
    incident_id, approval_id = waiting(engine)
    _, token = engine.identities.add("alice", "approver")
    with _client(engine) as client:
        _login(client, token)
        page = client.get("/ui/approvals").text
        copied = client.cookies.get("remediator_session")
        assert client.post("/ui/logout", data={"csrf": _csrf(page)}, follow_redirects=False).status_code == 303
    with _client(engine) as thief:
        thief.cookies.set("remediator_session", copied, domain="remediator.example", path="/ui")
        assert thief.get(f"/ui/approvals/{approval_id}", follow_redirects=False).status_code == 303   # to the login
        r = thief.post(f"/ui/approvals/{approval_id}/approve", data={"csrf": "x", "digest": PREVIEW.digest},
                       follow_redirects=False)
        assert r.status_code == 303 and "/ui/login" in r.headers["location"]
    assert _state(engine, incident_id) == IncidentState.AWAITING_APPROVAL
