"""Finding 9: one admin could mint a second approver and satisfy "two distinct approvers", and adding and removing
approvers was not audited. A token issued after a request opened does not count toward its distinct people, and
every change of who may decide is in the audit trail with who made it."""
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remediator.api.app import create_app
from remediator.engine.people import approvals
from remediator.engine.store.tables import AuditEvent
from tests.unit.test_approvals import waiting

pytestmark = [pytest.mark.security, pytest.mark.unit]


@pytest.fixture
def engine(make_engine):
    return make_engine(tokens=["service-token-0123456789ab"])


def test_an_admin_cannot_mint_the_second_approver_of_a_request(engine):
    ada, _ = engine.identities.add("ada", "admin")
    _, approval_id = waiting(engine, required=2)          # high risk: two distinct people
    assert approvals.vote(engine.store, engine.lifecycle, approval_id, ada, approve=True) == "pending"
    sock, _ = engine.identities.add("sock-puppet", "approver", by="ada")   # minted on the spot
    with pytest.raises(Exception, match="issued after this request opened"):
        approvals.vote(engine.store, engine.lifecycle, approval_id, sock, approve=True)
    bob, _ = engine.identities.add("bob", "approver")                     # the control: a real second person...
    with pytest.raises(Exception, match="issued after this request opened"):
        approvals.vote(engine.store, engine.lifecycle, approval_id, bob, approve=True)   # ...but also too late


def test_a_second_approver_who_held_the_role_before_counts(engine):
    ada, _ = engine.identities.add("ada", "admin")
    bob, _ = engine.identities.add("bob", "approver")
    _, approval_id = waiting(engine, required=2)
    assert approvals.vote(engine.store, engine.lifecycle, approval_id, ada, approve=True) == "pending"
    assert approvals.vote(engine.store, engine.lifecycle, approval_id, bob, approve=True) == "approved"


def test_adding_and_removing_approvers_is_audited_with_who_did_it(engine):
    _, admin_token = engine.identities.add("ada", "admin")
    with TestClient(create_app(engine, start_engine=False)) as client:
        auth = {"Authorization": f"Bearer {admin_token}"}
        assert client.post("/approvers", json={"name": "carol", "role": "approver"}, headers=auth).status_code == 201
        assert client.delete("/approvers/carol", headers=auth).status_code == 200
    with engine.store.read() as s:
        events = [(e.kind, e.data) for e in s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()]
    assert ("approver.added", {"name": "ada", "role": "admin", "by": "the command line"}) in events
    assert ("approver.added", {"name": "carol", "role": "approver", "by": "ada"}) in events
    assert ("approver.removed", {"name": "carol", "role": "approver", "by": "ada"}) in events


def test_approving_without_the_digest_of_the_dry_run_is_refused(engine):
    """Finding 17: `digest` was optional when voting, so an approval was not bound to what the person read."""
    _, token = engine.identities.add("alice", "approver")
    _, approval_id = waiting(engine)
    with TestClient(create_app(engine, start_engine=False)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        blind = client.post(f"/approvals/{approval_id}/approve", json={}, headers=auth)
        assert blind.status_code == 422 and "digest" in blind.json()["detail"]
        shown = client.get(f"/approvals/{approval_id}", headers=auth).json()["digest"]
        assert client.post(f"/approvals/{approval_id}/approve", json={"digest": shown}, headers=auth).status_code == 200
