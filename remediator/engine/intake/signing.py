"""Optional HMAC signatures on webhook bodies, for senders that can sign (a proxy, a relay, a script).

With `webhook_hmac_secret` set, a webhook must carry, besides its bearer token,
    X-Remediator-Timestamp: <unix seconds>
    X-Remediator-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>
The timestamp must be within `webhook_hmac_window_s` of now, and a signature is accepted once
within that window (a captured request replayed later, or twice, is refused). The signatures seen are kept in
the store (the inbox's), so a replay to another replica or after a restart is refused too. Alertmanager itself
cannot sign; leave the secret unset for it.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from remediator.engine.errors import AuthError
from remediator.engine.store.db import Store
from remediator.engine.store.tables import SeenSignature

__all__ = ["sign", "SignatureCheck", "TIMESTAMP_HEADER", "SIGNATURE_HEADER"]

TIMESTAMP_HEADER = "X-Remediator-Timestamp"
SIGNATURE_HEADER = "X-Remediator-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in X-Remediator-Signature."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class SignatureCheck:
    """Verifies signatures, and remembers in `store` those seen within the window (replays are refused)."""

    def __init__(self, secret: str, window_s: int, store: Store):
        self.secret, self.window_s, self.store = secret, window_s, store

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> str:
        """AuthError (401) saying what is wrong; when the body is signed, fresh and new, its signature (remembered:
        `forget()` it if the request is then not accepted, so the sender's retry is not a replay)."""
        now = time.time() if now is None else now
        if not timestamp or not signature:
            raise AuthError(f"this webhook must be signed: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} (sha256=HMAC "
                            f"of \"<timestamp>.<body>\"); see docs/reliability.md")
        try:
            ts = int(timestamp)
        except ValueError:
            raise AuthError(f"{TIMESTAMP_HEADER} must be unix seconds, got {timestamp[:40]!r}") from None
        if abs(now - ts) > self.window_s:
            raise AuthError(f"{TIMESTAMP_HEADER} is {int(now - ts)} s away from now; at most {self.window_s} s is accepted "
                            "(check the sender's clock, or this is a replay)")
        expected = sign(self.secret, ts, body)
        if not hmac.compare_digest(expected, signature.strip()):
            raise AuthError(f"{SIGNATURE_HEADER} does not match the body (wrong secret, or the body was changed)")
        # Keyed on the signature as computed, so no spelling of the header replays it; the primary key decides
        # between replicas. Kept until the timestamp itself would be refused.
        expires = datetime.fromtimestamp(ts + self.window_s, UTC).replace(tzinfo=None)
        try:
            with self.store.write() as session:
                session.execute(delete(SeenSignature).where(
                    SeenSignature.expires_at < datetime.fromtimestamp(now, UTC).replace(tzinfo=None)))
                session.add(SeenSignature(signature=expected, expires_at=expires))
        except IntegrityError:
            raise AuthError("this signed request was already received (a replay); sign each request anew") from None
        return expected

    def forget(self, signature: str) -> None:
        """The request this signature came with was not accepted (a 503): its retry is not a replay."""
        with self.store.write() as session:
            session.execute(delete(SeenSignature).where(SeenSignature.signature == signature))
