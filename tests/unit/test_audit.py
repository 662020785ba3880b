import pytest
from sqlalchemy import event, update

from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.tables import AuditEvent

pytestmark = [pytest.mark.unit, pytest.mark.store]


@pytest.fixture
def store(tmp_path, database_url):
    s = Store(database_url or f"sqlite:///{tmp_path / 'r.db'}")
    s.migrate()
    for i in range(5):
        with s.write() as session:
            audit.append(session, "step", {"n": i}, incident_id="inc1")
    return s


def test_intact_chain_verifies(store):
    report = audit.verify(store)
    assert report.ok and report.events == 5


def test_edited_event_is_caught(store):
    with store.write() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(data={"n": 99}))
    report = audit.verify(store)
    assert not report.ok and any("event 3" in p and "edited" in p for p in report.problems)


def test_deleted_event_is_caught(store):
    with store.write() as s:
        s.delete(s.get(AuditEvent, 2))
    report = audit.verify(store)
    assert not report.ok and any("event 2 is missing" in p for p in report.problems)


def test_deleted_last_event_is_caught(store):
    with store.write() as s:
        s.delete(s.get(AuditEvent, 5))
    assert not audit.verify(store).ok


def test_reordered_events_are_caught(store):
    with store.write() as s:
        a, b = s.get(AuditEvent, 2), s.get(AuditEvent, 4)
        a.data, b.data = b.data, a.data
    assert not audit.verify(store).ok


def test_an_event_appended_while_the_chain_is_walked_is_not_a_break(store):
    """serve's hourly check and `audit verify` run while replicas append. Found on PostgreSQL under load: the head was
    read, then an append committed, then the walk saw one event more than the head and called the chain broken."""
    appended = []

    def append_once(conn, cursor, statement, *_):
        if "FROM audit_events" in statement and not appended:
            appended.append(True)
            with store.write() as session:
                audit.append(session, "meanwhile", {}, incident_id="inc2")

    event.listen(store.engine, "before_cursor_execute", append_once)
    try:
        report = audit.verify(store)
    finally:
        event.remove(store.engine, "before_cursor_execute", append_once)
    assert appended, "the walk never ran: the test did not test that"
    assert report.ok and report.events == 5, report.problems
    assert audit.verify(store).events == 6


def test_every_shape_of_data_verifies_whichever_way_it_was_encoded(store):
    """append() encodes data with string keys once (sorted); other keys take the long way. Either way the stored
    event's digest is what verify() computes from the row as read back."""
    shapes = [{"labels": {"b": "2", "a": "ü", "nested": {"z": [1, 2.5, None, True]}}},
              {"at": __import__("datetime").date(2026, 12, 5), "set": ("a", "b")},
              {10: "ten", 9: "nine"},                 # int keys: sorted as numbers, stored as strings
              {"mixed": {1: "x", "b": "y"}},          # keys that cannot be sorted together
              {"float": 1e16, "small": -2.5e-7, "big": 2**70}]
    with store.write() as session:
        for data in shapes:
            audit.append(session, "shape", data, incident_id=None)
    report = audit.verify(store)
    assert report.ok and report.events == 5 + len(shapes), report.problems
