"""HMAC signatures on request bodies: optional on webhooks, for senders that can sign (a proxy, a relay, a script);
always on Slack's interaction callbacks, signed as Slack signs them (`SLACK`).

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from remediator.engine.errors import AuthError
from remediator.engine.store.db import Store
from remediator.engine.store.tables import SeenSignature

__all__ = ["sign", "sign_slack", "SignatureCheck", "Scheme", "REMEDIATOR", "SLACK", "TIMESTAMP_HEADER",
           "SIGNATURE_HEADER"]

TIMESTAMP_HEADER = "X-Remediator-Timestamp"
SIGNATURE_HEADER = "X-Remediator-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in X-Remediator-Signature."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_slack(secret: str, timestamp: int, body: bytes) -> str:
    """X-Slack-Signature as Slack computes it: v0=hex HMAC-SHA256 of "v0:<timestamp>:<body>" under the app's signing
    secret (https://api.slack.com/authentication/verifying-requests-from-slack)."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Scheme:
    """Where a sender puts the timestamp and the signature, how it signs, and what to read to learn how."""

    timestamp_header: str
    signature_header: str
    sign: Callable[[str, int, bytes], str]
    how: str


REMEDIATOR = Scheme(TIMESTAMP_HEADER, SIGNATURE_HEADER, sign,
                    'sha256=HMAC of "<timestamp>.<body>"; see docs/reliability.md')
SLACK = Scheme("X-Slack-Request-Timestamp", "X-Slack-Signature", sign_slack,
               'v0=HMAC of "v0:<timestamp>:<body>" under the Slack app\'s signing secret; see docs/approvals.md')


class SignatureCheck:
    """Verifies signatures, and remembers in `store` those seen within the window (replays are refused)."""

    def __init__(self, secret: str, window_s: int, store: Store, scheme: Scheme = REMEDIATOR):
        self.secret, self.window_s, self.store, self.scheme = secret, window_s, store, scheme

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> str:
        """AuthError (401) saying what is wrong; when the body is signed, fresh and new, its signature (remembered:
        `forget()` it if the request is then not accepted, so the sender's retry is not a replay)."""
        now = time.time() if now is None else now
        ts_header, sig_header = self.scheme.timestamp_header, self.scheme.signature_header
        if not timestamp or not signature:
            raise AuthError(f"this request must be signed: send {ts_header} and {sig_header} ({self.scheme.how})")
        try:
            ts = int(timestamp)
        except ValueError:
            raise AuthError(f"{ts_header} must be unix seconds, got {timestamp[:40]!r}") from None
        if abs(now - ts) > self.window_s:
            raise AuthError(f"{ts_header} is {int(now - ts)} s away from now; at most {self.window_s} s is accepted "
                            "(check the sender's clock, or this is a replay)")
        expected = self.scheme.sign(self.secret, ts, body)
        if not hmac.compare_digest(expected, signature.strip()):
            raise AuthError(f"{sig_header} does not match the body (wrong secret, or the body was changed)")
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
