"""Pruning the audit chain's oldest events without losing the proof of the rest: a signed checkpoint.

`cut()` removes the events up to a seq and keeps, in one row, that last event's seq and hash and how many events
were pruned in all, signed with HMAC-SHA256 under a key the store does not hold (`audit_checkpoint_key`, else a
file `data_dir/audit-key`, mode 0600). `audit.verify()` starts from the checkpoint: the first event left must follow
it; a checkpoint moved or edited without the key does not verify. `remediator audit export` ships the events
before a prune takes them.
"""
from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from remediator.engine.settings import Settings
from remediator.engine.store import audit
from remediator.engine.store.tables import AuditCheckpoint, AuditEvent

__all__ = ["signing_key", "cut"]


def signing_key(settings: Settings) -> bytes:
    """The checkpoint's key: the setting, or one made once and kept (0600) in the data dir."""
    if settings.audit_checkpoint_key:
        return settings.audit_checkpoint_key.get_secret_value().encode()
    path: Path = settings.data_dir / "audit-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


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
