"""Ids of what the engine makes: sortable by time, unguessable in their tail."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

__all__ = ["new_incident_id", "new_approval_id"]


def new_incident_id() -> str:
    """'20261203-180925-7a7ead': when it was opened, then random."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def new_approval_id() -> str:
    """An approval request's id: the same shape as an incident's (the pages and the CLI show both), its own draw."""
    return new_incident_id()
