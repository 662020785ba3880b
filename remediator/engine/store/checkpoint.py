"""Pruning the audit chain's oldest events without losing the proof of the rest: a signed checkpoint.

`cut()` removes the events up to a seq and keeps, in one row, that last event's seq and hash and how many events
were pruned in all, signed with HMAC-SHA256 under a key the store does not hold: `audit_checkpoint_key`, which
must come from outside data_dir (a systemd credential, a secret mount), since whoever can write the store and read
a key beside it could replace the whole chain with a checkpoint of zero events. `audit.verify()` starts from the
checkpoint: the first event left must follow it; a checkpoint moved or edited without the key does not verify.
`remediator audit export` ships the events before a prune takes them, and a prune never cuts what was not shipped.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from remediator.engine.errors import ConfigError
from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.tables import AuditCheckpoint, AuditEvent

__all__ = ["signing_key", "cutting_key", "cut", "LEGACY_KEY_FILE"]

LEGACY_KEY_FILE = "audit-key"   # where older versions made the key: beside the store
MIN_KEY_LENGTH = 32


def signing_key(settings: Settings) -> bytes | None:
    """The key a checkpoint is checked with: `audit_checkpoint_key`, else the key file an older version left in
    data_dir (read, never made: it proves nothing against someone who writes the store)."""
    if settings.audit_checkpoint_key:
        return settings.audit_checkpoint_key.get_secret_value().encode()
    legacy: Path = settings.data_dir / LEGACY_KEY_FILE
    return legacy.read_text().strip().encode() if legacy.is_file() else None


def cutting_key(settings: Settings) -> bytes:
    """The key a new checkpoint is signed with: `audit_checkpoint_key` only (ConfigError without it)."""
    key = settings.audit_checkpoint_key.get_secret_value() if settings.audit_checkpoint_key else ""
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            "pruning records cuts the audit chain behind a checkpoint signed with audit_checkpoint_key, "
            f"{'which is not set' if not key else f'which is shorter than {MIN_KEY_LENGTH} characters'}: set it from "
            "outside data_dir (REMEDIATOR_AUDIT_CHECKPOINT_KEY from a systemd credential or a secret mount, e.g. "
            "`openssl rand -base64 32`), never in a file beside the store")
    return key.encode()


def cut(session: Session, upto: int, key: bytes) -> int:
    """Inside a write transaction: prune the events up to seq `upto` behind a checkpoint (audited); how many went."""
    audit.lock(session)   # no event is appended meanwhile
    last = session.get(AuditEvent, upto)
    if last is None:
        return 0
    n = session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq <= upto)).scalar_one()
    row = session.get(AuditCheckpoint, 1)
    total = (row.events if row else 0) + n
    fields = {"seq": last.seq, "hash": last.hash, "events": total, "at": datetime.now(UTC).isoformat(),
              "signature": audit.checkpoint_signature(key, last.seq, last.hash, total)}
    if row is None:
        session.add(AuditCheckpoint(id=1, **fields))
    else:
        for name, value in fields.items():
            setattr(row, name, value)
    session.execute(delete(AuditEvent).where(AuditEvent.seq <= upto))
    audit.append(session, "audit.pruned", {"upto": last.seq, "hash": last.hash, "events": n, "pruned_in_all": total})
    return n
