"""Ids of what the engine makes: sortable by time, unguessable in their tail."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

__all__ = ["new_incident_id", "new_approval_id"]


def new_incident_id() -> str:
    """'20261203-180925-7a7ead01c2': when it was opened, then random (40 bits: a storm opens thousands in one
    second, and 24 bits made two of 500 collide about once in 140 such seconds, failing the batch)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(5)


def new_approval_id() -> str:
    """An approval request's id: the same shape as an incident's (the pages and the CLI show both), its own draw."""
    return new_incident_id()
