"""The schema's migrations on a store that has data: what an upgrade keeps, and that it goes back down."""
import pytest
from alembic import command
from sqlalchemy import text

from remediator.engine.store.db import Store
from remediator.engine.store.migrations import config

pytestmark = [pytest.mark.unit, pytest.mark.store]


@pytest.fixture
def store(tmp_path, database_url):
    return Store(database_url or f"sqlite:///{tmp_path / 'r.db'}")


def test_alerts_stored_before_0015_belong_to_the_sender_of_their_delivery(store):
    command.upgrade(config(store.engine), "0014")
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO deliveries (id, received_at, group_key, status, alerts_count, new_alerts, truncated, body, sender) "
                          "VALUES (1, CURRENT_TIMESTAMP, 'g', 'firing', 1, 1, 0, '{}', 'alertmanager'), "
                          "(2, CURRENT_TIMESTAMP, 'g', 'firing', 1, 1, 0, '{}', NULL)"))
        conn.execute(text("INSERT INTO alerts (delivery_id, fingerprint, starts_at, status, alertname, severity, labels, "
                          "annotations, generator_url, received_at) VALUES "
                          "(1, 'f1', 't', 'firing', 'A', 'critical', '{}', '{}', '', CURRENT_TIMESTAMP), "
                          "(2, 'f2', 't', 'firing', 'A', 'critical', '{}', '{}', '', CURRENT_TIMESTAMP)"))
    store.migrate()
    with store.engine.begin() as conn:
        owners = dict(conn.execute(text("SELECT fingerprint, owner FROM alerts")).all())
        assert owners == {"f1": "alertmanager", "f2": ""}
        # another sender's copy of f1 is an alert of its own now
        conn.execute(text("INSERT INTO alerts (delivery_id, fingerprint, starts_at, status, alertname, severity, labels, "
                          "annotations, generator_url, received_at, owner) VALUES "
                          "(2, 'f1', 't', 'firing', 'A', 'critical', '{}', '{}', '', CURRENT_TIMESTAMP, 'ci')"))
    command.downgrade(config(store.engine), "0014")   # keeps the first copy of each alert
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT fingerprint, delivery_id FROM alerts ORDER BY id")).all() == [
            ("f1", 1), ("f2", 2)]
    store.migrate()
