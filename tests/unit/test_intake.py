"""Intake and incidents: payload validation, dedup, correlation, resolved closes, priority."""
import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from sqlalchemy import select, text

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.decide.closing import lifecycle
from remediator.engine.errors import PayloadError
from remediator.engine.intake.group_commit import GroupCommit
from remediator.engine.intake.inbox import (
    Inbox,
    Received,
    accept,
    accept_many,
    ingest,
    parse_payload,
)
from remediator.engine.intake.ingester import Ingester, IngestLoop
from remediator.engine.model.states import IncidentState
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store
from remediator.engine.store.tables import AlertRow, Approval, AuditEvent, Delivery, Incident, OutboxMessage, utcnow
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.unit, pytest.mark.store]
SAMPLES = FIXTURES / "samples"
PAYLOADS = FIXTURES / "payloads"
INVALID = yaml.safe_load((PAYLOADS / "invalid.yml").read_text())


@pytest.fixture(scope="module")
def inventory():
    return load_inventory(PROJECT_ROOT / "inventory" / "lab.yml")


@pytest.fixture
def store(tmp_path, database_url):
    s = Store(database_url or f"sqlite:///{tmp_path / 'r.db'}")
    s.migrate()
    return s


@pytest.fixture
def inbox(store, settings):
    """The inbox beside `store`, as serve opens it (a file of its own beside SQLite, the store itself on PostgreSQL)."""
    return Inbox.open(settings.model_copy(update={"database_url": store.url}), store)


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path, slack_webhook_url="http://127.0.0.1:9/slack")


@pytest.fixture
def post(store, inbox, inventory, settings):
    def _post(name: str):
        path = SAMPLES / name if (SAMPLES / name).exists() else PAYLOADS / name
        return accept(inbox, parse_payload(path.read_bytes()), inventory, lifecycle(settings), "alertmanager")
    return _post


def _incidents(store) -> list[Incident]:
    with store.read() as s:
        return list(s.execute(select(Incident).order_by(Incident.created_at, Incident.id)).scalars())


def _where(incident: Incident) -> str:
    """The alertname|host part of an incident's correlation key (the rest: decisive labels and sender)."""
    return "|".join(incident.correlation_key.split("|")[:2])


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_samples_parse(sample):
    payload = parse_payload((SAMPLES / sample).read_bytes())
    assert payload.version == "4" and payload.alerts


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_payloads_name_the_field(case):
    body = json.loads((SAMPLES / "alertmanager-firing-disk.json").read_text())
    body = {**copy.deepcopy(body), **case.get("set", {})}
    for key in case.get("drop", []):
        body.pop(key)
    if isinstance(body["alerts"], list) and body["alerts"]:
        body["alerts"][0].update(case.get("alert", {}))
        if "long_label" in case:
            body["alerts"][0]["labels"][case["long_label"]["name"]] = "x" * case["long_label"]["length"]
    with pytest.raises(PayloadError) as err:
        parse_payload(json.dumps(body).encode())
    assert err.value.status == 422
    assert case["field"] in err.value.message


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_non_json_bodies_are_4xx(body):
    with pytest.raises(PayloadError) as err:
        parse_payload(body)
    assert err.value.status in (400, 422)


def test_unknown_fields_are_accepted():
    """The v4 contract may grow: an unknown key must not turn into a 4xx (Alertmanager would drop the alert)."""
    body = json.loads((SAMPLES / "alertmanager-firing-disk.json").read_text())
    body["someNewField"] = {"x": 1}
    body["alerts"][0]["anotherNewField"] = True
    assert parse_payload(json.dumps(body).encode()).alerts[0].fingerprint == "7bb22924b4f3e65b"


def test_resend_is_a_duplicate_and_opens_nothing(post, store):
    first = post("alertmanager-firing-grouped.json")
    again = post("alertmanager-firing-grouped.json")
    assert (first.new_alerts, first.duplicates) == (3, 0)
    assert (again.new_alerts, again.duplicates) == (0, 3)
    assert again.incidents == first.incidents
    assert len(_incidents(store)) == 3
    with store.read() as s:
        assert len(s.execute(select(AlertRow)).all()) == 3


def test_one_transaction_dedups_and_correlates_across_its_deliveries(store, inbox, inventory, settings):
    """A group commit stores several deliveries at once: a resend inside the same batch is still a duplicate."""
    grouped = parse_payload((SAMPLES / "alertmanager-firing-grouped.json").read_bytes())
    correlated = parse_payload((PAYLOADS / "correlated-firing.json").read_bytes())
    first, again, other = accept_many(inbox, [grouped, grouped, correlated], inventory, lifecycle(settings), "alertmanager")
    assert (first.new_alerts, again.duplicates, other.new_alerts) == (3, 3, 3)
    assert again.incidents == first.incidents
    assert len(_incidents(store)) == 5


def test_concurrent_webhooks_share_transactions_and_each_gets_its_own_answer(store, inbox, inventory, settings):
    batches = []

    def write(session, payloads):
        batches.append(len(payloads))
        return inbox.write(session, [Received(p, "alertmanager") for p in payloads])
    template = json.loads((SAMPLES / "alertmanager-firing-grouped.json").read_text())
    bodies = []
    for n in range(24):
        body = copy.deepcopy(template)
        body["alerts"] = [{**body["alerts"][0], "fingerprint": f"{n:016x}"}]
        bodies.append(parse_payload(json.dumps(body).encode()))
    group = GroupCommit(inbox.store, write)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(group.submit, bodies))
    assert len(set(ids)) == 24 and sum(batches) == 24
    assert inbox.move(10_000, after=inbox.floor()) == max(ids)   # into the store, to be taken in
    with store.write() as session:
        results = ingest(session, list(zip(ids, bodies, strict=False)), inventory, lifecycle(settings), settings)
    assert [r.new_alerts for r in results] == [1] * 24
    assert len(_incidents(store)) == 1   # one alertname on one host: they all correlate
    with store.write() as session:       # taken in once: a second pass (recovery and the queue) does nothing
        assert ingest(session, list(zip(ids, bodies, strict=False)), inventory, lifecycle(settings), settings) == []


def test_the_ingester_takes_in_what_was_acknowledged_before_a_restart(store, inbox, inventory, settings):
    """A crash between the 2xx and taking it in: the next start takes it in, once."""
    grouped = parse_payload((SAMPLES / "alertmanager-firing-grouped.json").read_bytes())
    with inbox.store.write() as session:
        (delivery_id,) = inbox.write(session, [Received(grouped, "alertmanager")])
    done = []
    # Its own process, as serve runs it: the store and inbox the settings name
    ingester = Ingester(settings.model_copy(update={"database_url": store.url}), inbox, inventory,
                        on_ingested=lambda batch: done.extend(batch.results))
    ingester.start()
    try:
        deadline = time.monotonic() + 10
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ingester.stop()
    assert [r.delivery_id for r in done] == [delivery_id] and done[0].new_alerts == 3
    assert len(_incidents(store)) == 3
    assert inbox.waiting() == {}   # moved out of the inbox once in the store


def test_unknown_hosts_are_kept_apart_say_why_and_are_escalated_at_once(post, store):
    result = post("alertmanager-firing-grouped.json")
    by_key = {_where(i): i for i in _incidents(store)}
    assert by_key["ServiceDown|api-server-01"].host == "api-server-01"
    assert by_key["ServiceDown|api-server-01"].state == IncidentState.RECEIVED
    unknown = by_key["ServiceDown|?api-server-02"]
    assert unknown.host is None and "no inventory host matches instance='api-server-02:8080'" in unknown.reason
    assert unknown.state == IncidentState.ESCALATED and unknown.id in result.escalated
    with store.read() as s:
        notes = s.execute(select(OutboxMessage).where(OutboxMessage.incident_id == unknown.id)).scalars().all()
    assert [n.event for n in notes] == ["escalated"]


def test_alerts_of_one_alertname_on_one_host_correlate(post, store):
    result = post("correlated-firing.json")
    assert result.new_alerts == 3
    incidents = _incidents(store)
    assert sorted(i.host for i in incidents) == ["app-server-01", "app-server-02"]
    with store.read() as s:
        on_01 = s.execute(select(AlertRow).where(AlertRow.incident_id == result.incidents[0])).scalars().all()
    assert {a.fingerprint for a in on_01} == {"aa00000000000001", "aa00000000000002"}
    # the audit: one event an alert; the one that joined names the incident's key, the one that opened it does not
    with store.read() as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.incident_id == result.incidents[0])
                           .order_by(AuditEvent.seq)).scalars().all()
    assert [e.kind for e in events] == ["incident.opened", "alert.firing", "alert.firing"]
    key = events[0].data["key"]
    assert [e.data.get("joined") for e in events[1:]] == [None, key]


def test_resolved_closes_only_when_every_alert_resolved(post, store):
    post("correlated-firing.json")
    post("correlated-resolved-one.json")
    states = {i.host: (i.state, i.firing) for i in _incidents(store)}
    assert states["app-server-01"] == ("received", True)      # its second alert still fires
    post("correlated-resolved-rest.json")
    for inc in _incidents(store):
        assert (inc.state, inc.firing) == ("resolved", False)
        assert "nothing was changed" in inc.reason and inc.closed_at is not None


def test_resolved_while_working_only_marks_not_firing(post, store):
    post("correlated-firing.json")
    with store.write() as s:
        for inc in s.execute(select(Incident)).scalars():
            inc.state = IncidentState.EXECUTING
    post("correlated-resolved-one.json")
    post("correlated-resolved-rest.json")
    assert {(i.state, i.firing) for i in _incidents(store)} == {("executing", False)}


def test_resolved_cancels_a_pending_approval_and_tells_people(post, store):
    result = post("correlated-firing.json")
    with store.write() as s:
        for inc in s.execute(select(Incident)).scalars():
            inc.state = IncidentState.AWAITING_APPROVAL
            s.add(Approval(id=f"ap-{inc.id}", incident_id=inc.id, preview_digest="d", state="pending",
                           expires_at=utcnow()))
    post("correlated-resolved-one.json")
    post("correlated-resolved-rest.json")
    with store.read() as s:
        assert {a.state for a in s.execute(select(Approval)).scalars()} == {"canceled"}
        notes = s.execute(select(OutboxMessage)).scalars().all()
    assert sorted(n.incident_id for n in notes) == sorted(result.incidents)
    assert {n.event for n in notes} == {"auto_resolved"}


def test_resolved_without_its_firing_alert_is_recorded(post, store):
    result = post("alertmanager-resolved.json")
    assert result.incidents == [] and result.new_alerts == 1
    with store.read() as s:
        kinds = [e.kind for e in s.execute(select(AuditEvent)).scalars()]
    assert kinds == ["alert.resolved_unmatched"]


def test_same_labels_firing_again_later_is_a_new_incident(post, store):
    post("correlated-firing.json")
    post("correlated-resolved-one.json")
    post("correlated-resolved-rest.json")
    again = post("refiring-later.json")
    assert again.new_alerts == 1
    latest = _incidents(store)[-1]
    assert latest.id == again.incidents[0] and latest.state == "received"


def test_severity_orders_the_queue(post, store):
    post("mixed-severity.json")
    by_host = {i.host: i.priority for i in _incidents(store)}
    assert by_host["api-server-01"] < by_host["app-server-02"]   # critical before warning


def test_the_same_alert_from_the_api_with_milliseconds_is_a_duplicate(post, store):
    """The webhook says startsAt …26.806317911Z, Alertmanager's API v2 …26.806Z: one alert."""
    post("alertmanager-firing-grouped.json")
    again = post("grouped-from-api-v2.json")
    assert (again.new_alerts, again.duplicates) == (0, 1)


def test_an_unknown_host_is_one_host_whatever_the_port(post, store):
    result = post("unknown-host-two-ports.json")
    assert result.new_alerts == 2 and len(result.incidents) == 1
    (incident,) = _incidents(store)
    assert incident.host is None and _where(incident) == "ServiceDown|?web-99"


def test_a_replica_starting_while_another_moves_deliveries_never_reuses_their_ids(store, inbox, inventory, settings,
                                                                                  monkeypatch):
    """Replica B's ingester starts and reads the newest delivery; replica A moves three more into the store before
    B sets the inbox's ids up. B's next webhook must get an id of its own: one a delivery already had was taken for
    moved, and its alerts were dropped while GET /deliveries/{id} showed the older delivery as taken in."""
    grouped = parse_payload((SAMPLES / "alertmanager-firing-grouped.json").read_bytes())
    with inbox.store.write() as session:
        taken = inbox.write(session, [Received(grouped, "alertmanager")] * 3)
    inbox.moved(inbox.move(10**9, after=inbox.floor()))
    inbox.forget_moved()
    monkeypatch.setattr(Inbox, "floor", lambda self: 0)   # B read it before A's move
    b = Inbox.open(settings.model_copy(update={"database_url": store.url}), store)
    monkeypatch.undo()
    mine = copy.deepcopy(json.loads((SAMPLES / "alertmanager-firing-grouped.json").read_text()))
    for i, alert in enumerate(mine["alerts"]):
        alert["fingerprint"] = f"b{i:015x}"
    with b.store.write() as session:
        (delivery_id,) = b.write(session, [Received(parse_payload(json.dumps(mine).encode()), "alertmanager")])
    assert delivery_id not in taken
    b.moved(b.move(10**9, after=max(taken)))
    b.forget_moved()
    with store.write() as session:
        ingest(session, [(delivery_id, parse_payload(json.dumps(mine).encode()))], inventory, lifecycle(settings), settings)
    with store.read() as session:
        stored = set(session.execute(select(AlertRow.fingerprint)).scalars())
    assert {a["fingerprint"] for a in mine["alerts"]} <= stored


def test_an_inbox_id_a_delivery_already_has_is_kept_under_a_new_one(postgres_url, inventory, settings):
    """Whatever sent the id sequence back (a restore, an older replica), moving never drops a row whose id a
    delivery already has: it gets a new id and is taken in."""
    store = Store(postgres_url)
    store.migrate()
    inbox = Inbox.open(settings.model_copy(update={"database_url": store.url}), store)
    grouped = parse_payload((SAMPLES / "alertmanager-firing-grouped.json").read_bytes())
    with inbox.store.write() as session:
        inbox.write(session, [Received(grouped, "alertmanager")] * 2)
    inbox.move(10**9, after=0)
    with store.write() as session:
        session.execute(text("SELECT setval(pg_get_serial_sequence('inbox', 'id'), 1)"))
    mine = json.loads((SAMPLES / "alertmanager-firing-grouped.json").read_text())
    for i, alert in enumerate(mine["alerts"]):
        alert["fingerprint"] = f"c{i:015x}"
    with inbox.store.write() as session:
        (reused,) = inbox.write(session, [Received(parse_payload(json.dumps(mine).encode()), "alertmanager")])
    assert reused == 2
    inbox.move(10**9, after=0)
    inbox.move(10**9, after=0)
    with store.read() as session:
        bodies = [b["alerts"][0]["fingerprint"] for b in session.execute(select(Delivery.body)).scalars()]
    assert "c000000000000000" in bodies and len(bodies) == 3


def test_the_ingest_loop_goes_on_after_an_error_that_is_not_the_store(store, inbox, inventory, settings, monkeypatch):
    """An unexpected error in one batch is logged and the loop tries again: ending the ingester restarted it and
    re-set the inbox's ids while other replicas wrote (see the test above)."""
    stuck, calls = [], []

    def flaky(self, stopping=lambda: False):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a bug")
        return 0
    monkeypatch.setattr(IngestLoop, "take_in_next", flaky)
    loop = IngestLoop(inbox, inventory, settings, report=lambda b: None, stuck=stuck.append)
    loop.run(lambda s: False, lambda: len(calls) >= 2)
    assert len(calls) == 2 and stuck == ["ValueError: see serve's log", ""]
