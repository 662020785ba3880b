"""Retention (`remediator prune`, and serve daily): old delivery bodies, sent notifications and closed incidents' run
artifacts go while incidents, alerts and the audit chain stay; with records, old closed incidents go too and the
audit chain's prefix behind a signed checkpoint, and what is left still verifies and exports as one chain."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from remediator.engine import PROJECT_ROOT
from remediator.engine.cli.main import app as cli
from remediator.engine.people.identities import Identities
from remediator.engine.settings import Settings
from remediator.engine.store import anchor, audit, queries, retention
from remediator.engine.store.tables import AuditCheckpoint, AuditEvent, Delivery, Incident, OutboxMessage, Run, utcnow
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.unit, pytest.mark.store]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()
LATER = timedelta(days=40)


@pytest.fixture
def engine(tmp_path, database_url):
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, webhook_url="http://127.0.0.1:9/hook"))
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


def _cli_env(engine, tmp_path, monkeypatch) -> str:
    """The CLI on the engine's store; an admin's token."""
    monkeypatch.setenv("REMEDIATOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REMEDIATOR_AUDIT_CHECKPOINT_KEY", KEY.decode())
    if engine.settings.database_url:
        monkeypatch.setenv("REMEDIATOR_DATABASE_URL", engine.settings.database_url)
    return Identities(engine.store, []).add("ada", "admin")[1]


def test_the_cli_prunes_and_says_what(engine, tmp_path, monkeypatch):
    admin = _cli_env(engine, tmp_path, monkeypatch)
    out = CliRunner().invoke(cli, ["prune", "--older-than", "0h", "--dry-run"])
    assert out.exit_code == 0 and "would prune" in out.output and "1 delivery bodies" in out.output
    out = CliRunner().invoke(cli, ["prune", "--older-than", "a month"])
    assert out.exit_code == 2 and "write a number and d or h" in out.output
    out = CliRunner().invoke(cli, ["prune", "--older-than", "0h", "--token", admin])
    assert out.exit_code == 0 and "pruned" in out.output and "1 delivery bodies" in out.output, out.output
    with engine.store.read() as session:
        pruned = session.execute(select(AuditEvent).where(AuditEvent.kind == "store.pruned")).scalars().one()
    assert pruned.data["by"] == "ada"   # in the token's name
    assert json.loads(SAMPLE)   # the fixture itself is untouched


# ---- records: closed incidents and the audit chain's prefix, behind a signed checkpoint ------------------------

KEY = b"k" * 32


def _ship(engine) -> None:
    """What `remediator audit export` records once the events are written out: a prune may cut them."""
    audit.mark_shipped(engine.store, 1, audit.head(engine.store)[0], "test")


def _events(engine) -> list[AuditEvent]:
    with engine.store.read() as session:
        return list(session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def test_pruning_records_leaves_a_chain_that_still_verifies(engine):
    _ship(engine)
    before = _events(engine)
    others = queries.list_incidents(engine.store, None, 100)
    assert len(others) == 3   # the grouped sample: one closed above, two escalated (closed) on no host
    with engine.store.write() as session:   # one stays open: its story must survive the prune whole
        keep = session.get(Incident, others[-1].id if others[-1].id != engine.incident_id else others[0].id)
        keep.state, keep.closed_at = "awaiting_approval", None
        keep_id = keep.id
    dry = retention.prune(engine.store, timedelta(days=30), incidents=True, dry_run=True, now=utcnow() + LATER)
    done = retention.prune(engine.store, timedelta(days=30), incidents=True, key=KEY, now=utcnow() + LATER)
    assert done.incidents == dry.incidents == 2 and done.audit_events == dry.audit_events > 0
    assert [i.id for i in queries.list_incidents(engine.store, None, 100)] == [keep_id]
    assert _count(engine, Run, Run.incident_id == engine.incident_id) == 0
    with engine.store.read() as session:
        cp = session.get(AuditCheckpoint, 1)
    after = _events(engine)
    assert after[0].seq == cp.seq + 1 and after[0].prev_hash == cp.hash == before[cp.seq - 1].hash
    assert cp.events == done.audit_events and after[-1].kind == "store.pruned"
    assert min(e.seq for e in before if e.incident_id == keep_id) > cp.seq   # the open incident's story is whole
    assert queries.get_incident(engine.store, keep_id).timeline
    report = audit.verify(engine.store, key=KEY)
    assert report.ok, report.problems
    # the heads exported before the prune: those it took are shipped, not failures; the last one is still reached
    assert audit.verify(engine.store, [(before[0].seq, before[0].hash), (before[-1].seq, before[-1].hash)], KEY).ok


def test_a_forged_checkpoint_or_a_further_cut_is_caught(engine):
    _ship(engine)
    retention.prune(engine.store, timedelta(days=30), incidents=True, key=KEY, now=utcnow() + LATER)
    assert not audit.verify(engine.store).ok                                  # no key, no trust
    assert "does not match its signature" in " ".join(audit.verify(engine.store, key=b"wrong" * 8).problems)
    first = _events(engine)[0]
    with engine.store.write() as session:   # someone with the store, not the key, prunes one more event
        session.delete(session.get(AuditEvent, first.seq))
        cp = session.get(AuditCheckpoint, 1)
        cp.seq, cp.hash = first.seq, first.hash
    problems = " ".join(audit.verify(engine.store, key=KEY).problems)
    assert "does not match its signature (moved or edited)" in problems


def test_prune_verify_and_export_together_from_the_cli(engine, tmp_path, monkeypatch):
    admin = _cli_env(engine, tmp_path, monkeypatch)
    runner = CliRunner()
    shipped = tmp_path / "shipped.jsonl"
    assert runner.invoke(cli, ["audit", "export", "-o", str(shipped)]).exit_code == 0   # ship first
    lines = [json.loads(line) for line in shipped.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:], strict=False))
    young = runner.invoke(cli, ["prune", "--older-than", "6d", "--incidents", "--token", admin])
    assert young.exit_code == 1 and "younger than 7 days are never pruned (asked: older than 144h)" in str(young.exception)
    # 40 days on (the CLI has no clock of its own to move): what `prune --older-than 30d --incidents` does then
    done = retention.prune(engine.store, timedelta(days=30), incidents=True, key=KEY, now=utcnow() + LATER, by="ada")
    assert done.incidents == 3 and done.audit_events == len(lines)
    assert done.audit_unshipped == 1   # the export's own record: shipped by the next export
    heads = tmp_path / "heads.log"   # as the anchor wrote them, one per commit
    heads.write_text("".join(anchor.LINE.format(seq=e["seq"], hash=e["hash"]) + "\n" for e in lines))
    verified = runner.invoke(cli, ["audit", "verify", "--heads", str(heads)])
    said = " ".join(verified.output.split())
    assert verified.exit_code == 0 and said.endswith("chain intact"), said
    assert f"pruned up to event {len(lines)} behind a signed checkpoint; {len(lines) - 1} of the heads fall there" in said
    rest = runner.invoke(cli, ["audit", "export", "--since", str(lines[-1]["seq"])])
    later = [json.loads(line) for line in rest.stdout.splitlines()]
    # what the prune left continues what was shipped: the two files together are one chain
    assert later and later[0]["prev_hash"] == lines[-1]["hash"] and later[-1]["kind"] == "store.pruned"
    assert later[0]["kind"] == "audit.exported" and later[0]["data"]["upto"] == len(lines)
    assert "resume with --since" in rest.stderr
