"""N2 and N11 of the second review: the prune and pause paths erased or steered what the audit says.

`remediator prune --older-than 0h --incidents` needed no token and had no floor: it erased every closed incident
and the whole chain, and `audit verify --heads` still said intact. The checkpoint's key was made beside the store,
so whoever wrote the store could also sign a checkpoint of zero events. `pause` and `resume` took their "by" from
LOGNAME. Each attack below is sent as the reviewer sent it; each must change nothing it should not."""
import logging
import re
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner

from remediator.engine import PROJECT_ROOT
from remediator.engine.cli.main import app as cli
from remediator.engine.errors import ConfigError, Forbidden
from remediator.engine.settings import Settings
from remediator.engine.store import audit, checkpoint, leases, retention
from remediator.engine.store.tables import AuditEvent, Incident, utcnow
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.security, pytest.mark.unit, pytest.mark.store]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()
KEY = "k" * 40
LATER = timedelta(days=40)


@pytest.fixture
def engine(tmp_path, database_url):
    engine = new_engine(Settings(data_dir=tmp_path, database_url=database_url, audit_anchor_syslog=False))
    take_in(engine, SAMPLE)   # three incidents: two closed at intake (escalated: no host), one for app-server-01
    with engine.store.write() as session:   # which is closed too: every record is old enough to go, 40 days on
        for inc in session.execute(select(Incident).where(Incident.closed_at.is_(None))).scalars():
            inc.state, inc.closed_at = "escalated", utcnow()
    return engine


@pytest.fixture
def env(engine, tmp_path):
    return {"REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_AUDIT_ANCHOR_SYSLOG": "false",
            **({"REMEDIATOR_DATABASE_URL": engine.settings.database_url} if engine.settings.database_url else {})}


def _token(runner, env, name, role) -> str:
    added = runner.invoke(cli, ["approvers", "add", name, "--role", role], env=env)
    assert added.exit_code == 0, added.output
    return re.search(r"rmd_\S+", added.output).group(0)


def _paused(engine) -> list[str]:
    with engine.store.read() as session:
        return [p.scope for p in leases.pauses(session)]


def _counts(engine) -> tuple[int, int]:
    with engine.store.read() as session:
        return (session.execute(select(func.count()).select_from(Incident)).scalar_one(),
                session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_the_reviewers_prune_needs_an_admin_and_respects_the_floor(engine, env):
    runner = CliRunner()
    approver, admin = _token(runner, env, "bob", "approver"), _token(runner, env, "ada", "admin")
    before = _counts(engine)
    keyed = {**env, "REMEDIATOR_AUDIT_CHECKPOINT_KEY": KEY}
    attempts = [
        (["prune", "--older-than", "0h", "--incidents"], keyed, "give an admin's --token"),
        (["prune", "--older-than", "30d", "--incidents", "--token", approver], keyed, "takes the admin role"),
        (["prune", "--older-than", "0h", "--incidents", "--token", admin], keyed, "younger than 7 days"),
        (["prune", "--older-than", "30d", "--incidents", "--token", admin], env, "audit_checkpoint_key, which is not set"),
    ]
    for args, with_env, why in attempts:
        out = runner.invoke(cli, args, env=with_env)
        assert out.exit_code != 0 and why in " ".join((out.output + str(out.exception)).split()), (args, out.output)
    assert _counts(engine)[0] == before[0]                 # no incident went
    assert not (engine.settings.data_dir / checkpoint.LEGACY_KEY_FILE).exists()   # and no key was made beside the store


def test_a_key_beside_the_store_signs_nothing(engine):
    (engine.settings.data_dir / checkpoint.LEGACY_KEY_FILE).write_text(KEY)   # as older versions left it
    with pytest.raises(ConfigError, match="not set"):
        checkpoint.cutting_key(engine.settings)
    assert checkpoint.signing_key(engine.settings) == KEY.encode()     # still read, to check an old checkpoint
    with pytest.raises(ConfigError, match="shorter than 32"):
        checkpoint.cutting_key(engine.settings.model_copy(update={"audit_checkpoint_key": SecretStr("short")}))


def test_serve_without_a_key_keeps_the_records_and_says_so(engine, caplog):
    before = _counts(engine)
    with caplog.at_level(logging.WARNING):
        engine._prune()
    assert _counts(engine)[0] == before[0]
    assert "closed incidents are kept" in caplog.text and "audit_checkpoint_key" in caplog.text


def test_what_was_not_shipped_is_never_cut_and_what_went_is_named(engine):
    with engine.store.read() as session:
        closed = sorted(session.execute(select(Incident.id)).scalars())
    events = _counts(engine)[1]
    first = retention.prune(engine.store, timedelta(days=30), incidents=True, key=KEY.encode(), now=utcnow() + LATER,
                            by="ada")
    assert first.incidents == len(closed) and first.audit_events == 0 and first.audit_unshipped == events
    assert _counts(engine) == (0, events + 1)   # the records went; every event stayed, and the prune's own
    with engine.store.read() as session:
        pruned = session.execute(select(AuditEvent).where(AuditEvent.kind == "store.pruned")).scalars().one()
    assert pruned.data["incident_ids"] == closed and pruned.data["by"] == "ada"
    audit.mark_shipped(engine.store, 1, events, "test")   # `remediator audit export` wrote 1..events out
    second = retention.prune(engine.store, timedelta(days=30), incidents=True, key=KEY.encode(), now=utcnow() + LATER)
    assert second.audit_events == events and second.audit_unshipped == 2   # store.pruned and audit.exported stay
    assert audit.verify(engine.store, key=KEY.encode()).ok


def test_pause_and_resume_are_made_in_a_tokens_name(engine, env):
    runner = CliRunner()
    approver, admin = _token(runner, env, "bob", "approver"), _token(runner, env, "ada", "admin")
    spoofed = {**env, "LOGNAME": "operator-a", "USER": "operator-a"}
    assert runner.invoke(cli, ["pause", "--reason", "change freeze"], env=spoofed).exit_code == 2   # no token: refused
    assert not _paused(engine)
    paused = runner.invoke(cli, ["pause", "--reason", "change freeze", "--token", approver], env=spoofed)
    assert paused.exit_code == 0, paused.output
    resumed = runner.invoke(cli, ["resume", "--token", approver], env={**env, "LOGNAME": "someone-else"})
    assert isinstance(resumed.exception, Forbidden) and _paused(engine)   # an approver may not resume
    assert runner.invoke(cli, ["resume", "--token", admin], env=env).exit_code == 0
    with engine.store.read() as session:
        said = [(e.kind, e.data["by"]) for e in session.execute(
            select(AuditEvent).where(AuditEvent.kind.like("claims.%")).order_by(AuditEvent.seq)).scalars()]
    assert said == [("claims.paused", "bob"), ("claims.resumed", "ada")]
