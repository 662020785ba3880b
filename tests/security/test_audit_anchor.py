"""Finding 10: the audit chain had no anchor. Delete the last events and move the head row back, and what is
left is a shorter chain that `audit verify` called intact; rewrite an event and rehash every one after it, and
the same. Each new head is now exported after its commit (syslog, an append-only file), and `audit verify
--heads FILE` / `--expect-head SEQ:HASH` catch a chain that no longer reaches an exported head."""
import json
import logging
import os
import socket
import subprocess

import pytest
from sqlalchemy import delete, select, update

from remediator.engine import PROJECT_ROOT
from remediator.engine.settings import Settings
from remediator.engine.store import anchor, audit
from remediator.engine.store.tables import AuditEvent, AuditHead
from tests.engines import new_engine
from tests.fakes import take_in

pytestmark = [pytest.mark.security, pytest.mark.unit]
SAMPLE = (PROJECT_ROOT / "tests/fixtures/samples/alertmanager-firing-grouped.json").read_bytes()
REMEDIATOR = PROJECT_ROOT / ".venv" / "bin" / "remediator"


@pytest.fixture
def engine(tmp_path):
    engine = new_engine(Settings(data_dir=tmp_path / "data", audit_anchor_file=tmp_path / "anchor" / "heads.log",
                             audit_anchor_syslog=False))
    take_in(engine, SAMPLE)
    body = json.loads(SAMPLE)
    body["alerts"] = [{**a, "fingerprint": f"{n:016x}"} for n, a in enumerate(body["alerts"], 1)]
    take_in(engine, json.dumps(body).encode())
    return engine


def _verify(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REMEDIATOR_DATA_DIR": str(tmp_path / "data"), "REMEDIATOR_AUDIT_ANCHOR_SYSLOG": "false"}
    return subprocess.run([str(REMEDIATOR), "audit", "verify", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _cut_tail(engine, n: int) -> None:
    """The attack: remove the last n events and move the head row back, leaving a valid, shorter chain."""
    with engine.store.write() as session:
        last = session.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(n + 1)).scalars().all()
        keep = last[-1]
        session.execute(delete(AuditEvent).where(AuditEvent.seq > keep.seq))
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=keep.seq, hash=keep.hash))


def test_every_commit_that_appends_exports_the_new_head(engine, tmp_path):
    heads = anchor.parse_heads((tmp_path / "anchor" / "heads.log").read_text())
    assert len(heads) >= 2 and heads[-1] == audit.head(engine.store)
    assert [s for s, _ in heads] == sorted(s for s, _ in heads)


def test_a_tail_cut_off_with_its_head_is_caught(engine, tmp_path):
    exported = audit.head(engine.store)
    assert _verify(tmp_path, "--heads", str(tmp_path / "anchor" / "heads.log")).returncode == 0   # the control
    _cut_tail(engine, 3)
    assert audit.verify(engine.store).ok          # without the anchor the shorter chain looks intact
    out = _verify(tmp_path, "--heads", str(tmp_path / "anchor" / "heads.log"))
    assert out.returncode == 1 and "events at the end were removed, with the head" in out.stdout, out.stdout
    one = _verify(tmp_path, "--expect-head", f"{exported[0]}:{exported[1]}")
    assert one.returncode == 1 and f"event {exported[0]} was exported as the head" in one.stdout


def test_a_rewritten_and_rehashed_chain_is_caught(engine, tmp_path):
    """Edit an early event and recompute every hash after it: internally consistent, but not what was exported."""
    with engine.store.write() as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        prev = audit.GENESIS
        for ev in events:
            data = {**ev.data, "alertname": "Nothing"} if ev.seq == 1 else ev.data
            digest = audit._digest(prev, ev.seq, ev.at, ev.incident_id, ev.kind, audit._canonical(data))
            session.execute(update(AuditEvent).where(AuditEvent.seq == ev.seq).values(data=data, prev_hash=prev, hash=digest))
            prev = digest
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    assert audit.verify(engine.store).ok
    out = _verify(tmp_path, "--heads", str(tmp_path / "anchor" / "heads.log"))
    assert out.returncode == 1 and "its hash is not the one exported as the head then" in out.stdout


def test_heads_go_to_syslog(tmp_path, monkeypatch):
    """The syslog sink speaks the real protocol to a /dev/log-like socket (the journal listens there)."""
    path = tmp_path / "log.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    monkeypatch.setattr(anchor, "_SYSLOG", str(path))
    engine = new_engine(Settings(data_dir=tmp_path / "data"))
    take_in(engine, SAMPLE)
    seq, _ = audit.head(engine.store)
    received = listener.recv(4096).decode()
    listener.close()
    assert received.startswith("<") and "remediator-audit: remediator audit head" in received   # <PRI>ident: msg
    assert 1 <= anchor.parse_heads(received)[0][0] <= seq


def test_a_syslog_anchor_without_dev_log_is_said_at_start_not_dropped(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(anchor, "_SYSLOG", str(tmp_path / "no-such-socket"))
    engine = new_engine(Settings(data_dir=tmp_path / "data", audit_anchor_file=tmp_path / "heads.log"))
    assert engine.store.anchored   # the file is
    with caplog.at_level(logging.WARNING):
        engine.start()
        engine.stop()
    said = [r.getMessage() for r in caplog.records if "audit_anchor_syslog is on, but this host has no" in r.getMessage()]
    assert len(said) == 1 and "heads.log" in said[0]
    assert anchor.syslog_missing(False, None) is None   # not asked for: nothing to say


def test_a_malformed_expected_head_is_a_clear_error(tmp_path):
    new_engine(Settings(data_dir=tmp_path / "data"))
    out = _verify(tmp_path, "--expect-head", "12:abc")
    assert out.returncode == 2 and "write each as SEQ:HASH" in out.stderr
