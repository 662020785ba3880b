"""Pacing: a storm's webhooks are answered at the rate the ingester takes alerts in (remediator/engine/intake/pacing.py)."""
import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from remediator.api.app import create_app
from remediator.engine import PROJECT_ROOT
from remediator.engine.errors import StoreUnavailable
from remediator.engine.intake.inbox import Received, parse_payload
from remediator.engine.intake.pacing import Pacer
from remediator.engine.store.db import Store
from remediator.engine.store.leader import INGEST, serialize
from remediator.engine.store.tables import Delivery

GROUPED = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()
AUTH = {"Authorization": "Bearer pace-token-0123456789abcdef"}


class Ingesting:
    """What the pacer reads of an ingester: alerts waiting (none in hand), and how many it takes in a second."""

    def __init__(self, waiting: int, rate: float):
        self.backlog, self.rate, self.in_hand = waiting, rate, 0

    def behind_s(self, more: int = 0) -> float:
        return (self.backlog - self.in_hand + more) / self.rate

    def pacer(self, lag_max_s: float = 0.1, hold_s: float = 5, floor_alerts: int = 0) -> Pacer:
        return Pacer(self, lag_max_s, hold_s, floor_alerts)


def _admit(pacer: Pacer, alerts: int, **kw) -> float:
    """Seconds until `alerts` were admitted."""
    async def go() -> float:
        started = time.monotonic()
        await pacer.admit(alerts, **kw)
        return time.monotonic() - started
    return asyncio.run(go())


@pytest.mark.unit
def test_within_the_lag_a_webhook_is_admitted_at_once():
    pacer = Ingesting(waiting=500, rate=10_000).pacer(lag_max_s=0.1)   # 0.05 s behind, and 100 alerts more: 0.06
    assert _admit(pacer, 100) < 0.05
    assert pacer.admitting == 100   # counted until stored: the next webhook sees them
    pacer.done(100)
    assert pacer.admitting == 0


@pytest.mark.unit
def test_nothing_waiting_admits_a_delivery_however_big():
    assert _admit(Ingesting(waiting=0, rate=10).pacer(lag_max_s=0.1), 10_000) < 0.05


@pytest.mark.unit
def test_behind_a_webhook_is_held_until_the_ingester_has_taken_enough_in():
    ingesting = Ingesting(waiting=5000, rate=10_000)   # 0.5 s behind
    pacer = ingesting.pacer(lag_max_s=0.1)

    def take_in():
        time.sleep(0.3)
        ingesting.backlog = 2000   # still 0.2 s behind: looks again, and waits on
        pacer.progress()
        time.sleep(0.3)
        ingesting.backlog = 0
        pacer.progress()
    threading.Thread(target=take_in).start()
    assert 0.55 < _admit(pacer, 100) < 2   # the first progress() was not enough; the second one was
    assert pacer.held == 0


@pytest.mark.unit
def test_admitted_alerts_count_before_they_are_stored():
    """Two webhooks held together, with room for one: the second waits for the first's alerts to be taken in."""
    ingesting = Ingesting(waiting=2000, rate=10_000)   # 0.2 s behind: both are held
    pacer = ingesting.pacer(lag_max_s=0.1)

    async def both() -> list[str]:
        order: list[str] = []

        async def webhook(name: str):
            await pacer.admit(100)
            order.append(name)   # (not stored: its alerts stay admitting)
        first = asyncio.create_task(webhook("first"))
        second = asyncio.create_task(webhook("second"))
        await asyncio.sleep(0.1)
        ingesting.backlog, ingesting.rate = 0, 1000   # room for 100 alerts: one webhook's
        pacer.progress()
        await asyncio.sleep(0.1)
        assert order == ["first"] and pacer.held == 1
        pacer.done(100)
        pacer.progress()
        await asyncio.gather(first, second)
        return order
    assert asyncio.run(both()) == ["first", "second"]


@pytest.mark.unit
def test_pacing_only_delays_past_intake_hold_s_the_webhook_is_taken():
    """A store slow for a while must not turn into refusals: only intake_backlog_max answers 503."""
    pacer = Ingesting(waiting=50_000, rate=1000).pacer(lag_max_s=0.1, hold_s=0.2)
    assert 0.2 <= _admit(pacer, 100) < 1
    assert pacer.admitting == 100 and pacer.held == 0


@pytest.mark.unit
def test_under_the_floor_nothing_is_held_however_slow_the_ingester_seems():
    """Batches smaller than the floor cost more than they save, and a rate measured on them falls further."""
    ingesting = Ingesting(waiting=300, rate=10)   # 30 s behind by its rate, but only 300 alerts
    assert _admit(ingesting.pacer(lag_max_s=0.1, floor_alerts=500), 100) < 0.05
    ingesting.in_hand = 300                       # and what is in hand does not count: the next batch fills up to it
    assert _admit(ingesting.pacer(lag_max_s=0.1, floor_alerts=500), 400) < 0.05
    assert not ingesting.pacer(lag_max_s=0.1, floor_alerts=500).behind(500)
    assert ingesting.pacer(lag_max_s=0.1, floor_alerts=500).behind(501)


@pytest.mark.unit
def test_a_sender_that_hung_up_is_not_admitted():
    ingesting = Ingesting(waiting=5000, rate=1000)
    pacer = ingesting.pacer(lag_max_s=0.1)

    async def gone() -> bool:
        return True
    threading.Timer(0.1, pacer.progress).start()
    with pytest.raises(StoreUnavailable, match="closed the connection"):
        _admit(pacer, 100, gone=gone)
    assert pacer.admitting == 0


@pytest.mark.unit
@pytest.mark.store
def test_the_ingester_measures_its_rate_and_what_waits_beyond_its_batch(make_engine):
    engine = make_engine()
    ingester = engine.ingester
    assert ingester.rate is None and ingester.behind_s(5000) == pytest.approx(1.0)   # a batch a second, until measured
    grouped = parse_payload(GROUPED)
    with engine.inbox.store.write() as session:
        ids = engine.inbox.write(session, [Received(grouped, "alertmanager")] * 20)
    for delivery_id in ids:
        ingester.acknowledged(delivery_id, 3)
    ingester.start()
    try:
        assert ingester.wait_idle(30)
    finally:
        ingester.stop()
    assert ingester.rate and ingester.rate > 0 and ingester.backlog == 0 and ingester.in_hand == 0
    assert ingester.behind_s(300) == pytest.approx(300 / ingester.rate)
    ingester.stuck = "the store is down"   # then its rate says nothing: only intake_backlog_max bounds the backlog
    assert ingester.behind_s(300) == 0


@pytest.mark.unit
@pytest.mark.store
def test_a_webhook_is_held_while_the_ingester_cannot_move_then_taken(make_engine):
    engine = make_engine(tokens=["pace-token-0123456789abcdef"], intake_lag_max_s=0.001, intake_hold_s=0.5,
                         intake_batch_alerts=10)   # a floor of one alert
    with TestClient(create_app(engine, start_engine=False)) as client:
        other = Store(engine.store.url, "OFF")   # another writer of the store holds the ingester's lock
        try:
            with other.write() as session:
                serialize(session, INGEST)
                first = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
                assert first.status_code == 200, first.text   # nothing waited: admitted
                started = time.monotonic()
                held = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
                assert held.status_code == 200, held.text   # held, then taken: pacing never refuses
                assert time.monotonic() - started >= 0.5
                assert engine.pacer.held == 0 and engine.ingester.backlog == 6
        finally:
            other.engine.dispose()
        assert engine.ingester.wait_idle(30)
        with engine.store.read() as session:
            assert session.execute(select(func.count()).select_from(Delivery)).scalar_one() == 2
        for r in (first, held):
            assert client.get(f"/deliveries/{r.json()['delivery']}", headers=AUTH).json()["ingested"]


@pytest.mark.unit
@pytest.mark.store
def test_past_intake_backlog_max_the_webhook_answers_503_counting_what_other_webhooks_bring(make_engine):
    """The one refusal: the backlog is full. Alerts admitted for other webhooks and not stored yet count too (a burst
    of concurrent webhooks each passed the first look); what was acknowledged before is kept."""
    engine = make_engine(tokens=["pace-token-0123456789abcdef"], intake_backlog_max=100, intake_hold_s=0)
    with TestClient(create_app(engine, start_engine=False)) as client:
        other = Store(engine.store.url, "OFF")   # the ingester cannot move: another writer holds its lock
        try:
            with other.write() as session:
                serialize(session, INGEST)
                assert client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH).status_code == 200
                engine.pacer.admitting = 95   # other webhooks' alerts: admitted, their commit not done yet
                refused = client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH)
                assert refused.status_code == 503 and "98 alerts are waiting" in refused.json()["detail"], refused.text
                engine.pacer.admitting = 0    # their commit failed after all
                answers = [client.post("/webhook/alertmanager", content=GROUPED, headers=AUTH) for _ in range(33)]
                assert [r.status_code for r in answers] == [200] * 32 + [503]        # 99 wait, 3 more are past 100
                assert "intake_backlog_max" in answers[-1].json()["detail"]
        finally:
            other.engine.dispose()
        assert engine.ingester.wait_idle(30)
        with engine.store.read() as session:
            assert session.execute(select(func.count()).select_from(Delivery)).scalar_one() == 33   # none of the 200s lost
