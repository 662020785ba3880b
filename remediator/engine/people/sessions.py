"""Logins to the approval pages, kept in the store: logging out ends a session for good, and so does removing
the person. The browser holds the session's secret (in a signed cookie); the store keeps only its sha256."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select

from remediator.engine.store.db import Store
from remediator.engine.store.tables import UiSession, utcnow

__all__ = ["begin", "approver_of", "end"]


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def begin(store: Store, approver_id: str, ttl_s: int) -> str:
    """A new session for this person; its secret (for the cookie)."""
    secret = secrets.token_urlsafe(32)
    with store.write() as session:
        session.add(UiSession(id=_key(secret), approver_id=approver_id, created_at=utcnow(),
                              expires_at=utcnow() + timedelta(seconds=ttl_s)))
    return secret


def approver_of(store: Store, secret: str) -> str | None:
    """Whose session this is, while it has not ended or expired."""
    with store.read() as session:
        return session.execute(select(UiSession.approver_id).where(
            UiSession.id == _key(secret), UiSession.ended_at.is_(None), UiSession.expires_at > utcnow())).scalar_one_or_none()


def end(store: Store, secret: str) -> None:
    """Log out: the session's cookie opens nothing any more, even if it was copied."""
    with store.write() as session:
        row = session.get(UiSession, _key(secret))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
