"""The outbox is a singleton: one replica sends, under the housekeeper's advisory lock. Kill -9 that replica in the
middle of a send and the other takes the lock and sends the rest within its deadline; every message arrives once:
none the dead one had sent goes again, and the one it was sending when it died goes after its claim (notify_claim_s)."""
import time

import httpx
import pytest

from remediator.engine.outbound.notify import Notification, NotifyEvent, enqueue
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store
from tests.e2e.conftest import Server, free_port
from tests.postgres import Cluster
from tests.standins import Receivers

pytestmark = pytest.mark.e2e
MESSAGES, SENT_BEFORE, CLAIM_S, DEADLINE_S = 30, 10, 5, 20


def _leads(server: Server) -> bool:
    try:
        metrics = server.client.get("/metrics", timeout=5).text
    except httpx.HTTPError:
        return False
    return "\nremediator_leader 1.0" in metrics


def _queue(url: str) -> None:
    """MESSAGES notifications into the outbox, as the pipeline writes them (Slack only: the test counts Slack's)."""
    store = Store(url)
    settings = Settings(slack_webhook_url="http://127.0.0.1:9/slack")
    with store.write() as session:
        for n in range(MESSAGES):
            enqueue(session, settings, Notification(event=NotifyEvent.ESCALATED, incident_id=f"failover-{n:02d}",
                                                    alertname="ServiceDown", host="app-server-01", severity="critical",
                                                    state="escalated", text=f"message {n:02d}"))
    store.engine.dispose()


def test_the_outbox_moves_to_another_replica_in_time_and_sends_nothing_twice(tmp_path):
    cluster = Cluster()
    url = cluster.new_database()
    with Receivers() as receivers:
        replicas = [Server(tmp_path / f"replica-{n}", receivers, free_port(), new_session=True, database_url=url,
                           notify_claim_s=str(CLAIM_S)) for n in range(2)]
        try:
            deadline = time.monotonic() + 30
            while not (leaders := [s for s in replicas if _leads(s)]) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(leaders) == 1, "exactly one replica runs the singletons"
            leader, other = leaders[0], next(s for s in replicas if s is not leaders[0])
            assert not _leads(other)
            receivers.hold_after["slack"] = SENT_BEFORE
            _queue(url)
            assert receivers.holding.wait(60), "the leader did not send"
            leader.kill()                                  # mid-send: its 11th message is at Slack, unanswered
            killed_at = time.monotonic()
            receivers.released.set()
            while len(receivers.received["slack"]) < MESSAGES and time.monotonic() - killed_at < DEADLINE_S + CLAIM_S:
                time.sleep(0.2)
            took = time.monotonic() - killed_at
            texts = [b["text"].rsplit(": ", 1)[-1] for b in receivers.received["slack"]]
            assert sorted(texts) == [f"message {n:02d}" for n in range(MESSAGES)], texts    # each once, none lost
            assert took < DEADLINE_S + CLAIM_S, f"the rest took {took:.1f} s after the kill"
            assert _leads(other)
        finally:
            for s in replicas:
                if s.proc.poll() is None:
                    s.stop()
            cluster.stop()
