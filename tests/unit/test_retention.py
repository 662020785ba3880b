"""Retention (`remediator prune`, and serve daily after `retention_days`): old delivery bodies, sent notifications
and closed incidents' run artifacts go; incidents, alerts and the audit chain stay and still verify."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from remediator.engine import PROJECT_ROOT
from remediator.engine.cli.main import app as cli
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store import audit, queries, retention
from remediator.engine.store.db import Delivery, Incident, OutboxMessage, Run, utcnow
from tests.fakes import take_in

pytestmark = pytest.mark.unit
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()
LATER = timedelta(days=40)


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(Settings(data_dir=tmp_path, database_url=database_url, webhook_url="http://127.0.0.1:9/hook"))
    incident_id = take_in(engine, SAMPLE).incidents[0]
    artifacts = tmp_path / "runs" / f"{incident_id}-a1-check"
    artifacts.mkdir(parents=True)
    (artifacts / "stdout").write_text("the dry run")
    with engine.store.write() as session:
        inc = session.get(Incident, incident_id)
        inc.state, inc.closed_at = "escalated", utcnow()
        session.add(Run(incident_id=incident_id, ident="i", entry="restart_service", mode="check", hosts=[], params={},
                        status="successful", artifact_dir=str(artifacts)))
        session.add(OutboxMessage(channel="webhook", event="escalated", payload={}, sent_at=utcnow()))
        session.add(OutboxMessage(channel="webhook", event="escalated", payload={}))   # not sent: it stays
    engine.incident_id, engine.artifacts = incident_id, artifacts
    return engine


def _count(engine, model, *where):
    with engine.store.read() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_prune_removes_old_bulk_and_keeps_the_story(engine):
    dry = retention.prune(engine.store, timedelta(days=30), dry_run=True, now=utcnow() + LATER)
    assert (dry.delivery_bodies, dry.notifications, dry.run_dirs) == (1, 1, 1) and engine.artifacts.exists()
    assert retention.prune(engine.store, timedelta(days=30), now=utcnow()).run_dirs == 0   # nothing is old yet
    done = retention.prune(engine.store, timedelta(days=30), now=utcnow() + LATER)
    assert (done.delivery_bodies, done.notifications, done.run_dirs) == (1, 1, 1)
    assert not engine.artifacts.exists()
    with engine.store.read() as session:
        assert session.execute(select(Delivery.body)).scalar_one() == retention.PRUNED_BODY
    assert _count(engine, OutboxMessage, OutboxMessage.sent_at.is_not(None)) == 0
    assert _count(engine, OutboxMessage, OutboxMessage.sent_at.is_(None)) >= 1    # what is not sent yet is kept
    story = queries.get_incident(engine.store, engine.incident_id)  # the incident's story still reads
    assert story.alerts and story.runs
    assert audit.verify(engine.store).ok
    again = retention.prune(engine.store, timedelta(days=30), now=utcnow() + LATER)
    assert (again.delivery_bodies, again.notifications, again.run_dirs) == (0, 0, 0)


def test_the_cli_prunes_and_says_what(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("REMEDIATOR_DATA_DIR", str(tmp_path))
    if engine.settings.database_url:
        monkeypatch.setenv("REMEDIATOR_DATABASE_URL", engine.settings.database_url)
    out = CliRunner().invoke(cli, ["prune", "--older-than", "0h", "--dry-run"])
    assert out.exit_code == 0 and "would prune" in out.output and "1 delivery bodies" in out.output
    out = CliRunner().invoke(cli, ["prune", "--older-than", "a month"])
    assert out.exit_code == 2 and "write a number and d or h" in out.output
    assert json.loads(SAMPLE)   # the fixture itself is untouched
