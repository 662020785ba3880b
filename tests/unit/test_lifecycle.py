"""The incident lifecycle: the transition table holds, nothing else writes a state, and close() is where
every final state's side effects happen (the closed-incidents metric counts rejected and expired ones)."""
import ast
from collections import deque
from datetime import timedelta

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.errors import IllegalTransition
from remediator.engine.model.states import FINAL_STATES, TRANSITIONS, IncidentState
from remediator.engine.people import approvals
from remediator.engine.people.identities import Identity, Role
from remediator.engine.store.tables import Approval, AuditEvent, Incident, utcnow
from tests.fakes import take_in
from tests.unit.test_approvals import PAYLOAD, waiting

PAYLOADS = PROJECT_ROOT / "tests/fixtures/payloads"

pytestmark = [pytest.mark.unit, pytest.mark.store]
S = IncidentState


@pytest.fixture
def engine(make_engine):
    return make_engine(tokens=["service-token-0123456789ab"])


def _closed(engine, state: str) -> float:
    return engine.metrics.registry.get_sample_value("remediator_incidents_closed_total", {"state": state}) or 0.0


def test_the_table_covers_every_state_and_every_incident_can_end():
    assert set(TRANSITIONS) == set(S)
    assert all(not TRANSITIONS[s] for s in FINAL_STATES)
    reachable, todo = {S.RECEIVED}, deque([S.RECEIVED])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    assert reachable == set(S), "a state no incident can reach"
    for state in set(S) - FINAL_STATES:   # no dead end: a final state is reachable from each
        seen, todo = {state}, deque([state])
        while todo:
            for nxt in TRANSITIONS[todo.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & FINAL_STATES, state


def test_every_move_is_checked_against_the_table(engine):
    """All 14 x 14 moves: the table's go through (move or close), every other one is refused and changes nothing."""
    lifecycle = engine.lifecycle
    for i, before in enumerate(S):
        for j, after in enumerate(S):
            incident_id = f"walk-{i}-{j}"
            with engine.store.write() as session:
                inc = Incident(id=incident_id, correlation_key=f"t|{incident_id}", alertname="T", host="app-server-01",
                               severity="warning", priority=2, state=before, labels={}, annotations={},
                               created_at=utcnow(), updated_at=utcnow())
                session.add(inc)
            go = lifecycle.close if after in FINAL_STATES else lifecycle.move
            with engine.store.write() as session:
                inc = session.get(Incident, incident_id)
                if after in TRANSITIONS[before]:
                    go(session, inc, after, "walked")
                else:
                    with pytest.raises(IllegalTransition, match=f"from {before.value} to {after.value}"):
                        go(session, inc, after, "walked")
            with engine.store.read() as session:
                assert session.get(Incident, incident_id).state == (after if after in TRANSITIONS[before] else before)


def test_move_refuses_a_final_state_and_close_a_held_one(engine):
    incident_id = take_in(engine, PAYLOAD).incidents[0]
    with engine.store.write() as session:
        inc = session.get(Incident, incident_id)
        with pytest.raises(IllegalTransition, match="only close"):
            engine.lifecycle.move(session, inc, S.ESCALATED, "no")
        with pytest.raises(IllegalTransition, match="use move"):
            engine.lifecycle.close(session, inc, S.DIAGNOSING, "no")


def test_rejected_expired_auto_resolved_and_hostless_are_closed_and_counted(engine):
    """Each way out that bypassed the pipeline's bookkeeping before: all four count in the closed metric."""
    alice = Identity(name="alice", role=Role.APPROVER, approver_id="a1")
    rejected, approval_id = waiting(engine)
    approvals.vote(engine.store, engine.lifecycle, approval_id, alice, approve=False, comment="not now")

    expired, approval_id = waiting(engine, payload=(PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-disk.json").read_bytes())
    with engine.store.write() as session:
        session.get(Approval, approval_id).expires_at = utcnow() - timedelta(seconds=1)
    assert approvals.expire_due(engine.store, engine.lifecycle) == 1

    hostless = take_in(engine, (PAYLOADS / "unknown-host-two-ports.json").read_bytes())
    quiet = take_in(engine, (PAYLOADS / "correlated-firing.json").read_bytes()).incidents
    take_in(engine, (PAYLOADS / "correlated-resolved-one.json").read_bytes())
    take_in(engine, (PAYLOADS / "correlated-resolved-rest.json").read_bytes())

    with engine.store.read() as session:
        assert session.get(Incident, rejected).state == S.REJECTED
        assert session.get(Incident, expired).state == S.EXPIRED
        assert {session.get(Incident, i).state for i in quiet} == {S.RESOLVED}
        closes = session.query(AuditEvent).filter(AuditEvent.kind.in_(["incident.rejected", "incident.expired"])).count()
    assert closes == 2
    assert _closed(engine, "rejected") == 1
    assert _closed(engine, "expired") == 1
    assert _closed(engine, "escalated") == len(hostless.escalated) >= 1
    assert _closed(engine, "resolved") == len(quiet)


def test_nothing_but_the_lifecycle_writes_an_incident_state():
    """A static check over the product code: `<x>.state = IncidentState...` appears in lifecycle.py alone."""
    offenders = []
    for path in [*(PROJECT_ROOT / "remediator").rglob("*.py")]:
        if path.name == "lifecycle.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "state"
                                                    for t in node.targets):
                if "IncidentState" in ast.unparse(node.value) or "nxt" in ast.unparse(node.value):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []
