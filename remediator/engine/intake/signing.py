"""Optional HMAC signatures on webhook bodies, for senders that can sign (a proxy, a relay, a script).

With `webhook_hmac_secret` set, a webhook must carry, besides its bearer token,
    X-Remediator-Timestamp: <unix seconds>
    X-Remediator-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>
The timestamp must be within `webhook_hmac_window_s` of now, and a signature is accepted once
within that window (a captured request replayed later, or twice, is refused). Alertmanager itself
cannot sign; leave the secret unset for it.
"""
from __future__ import annotations

import hashlib
import hmac
import threading
import time

from remediator.engine.errors import AuthError

__all__ = ["sign", "SignatureCheck", "TIMESTAMP_HEADER", "SIGNATURE_HEADER"]

TIMESTAMP_HEADER = "X-Remediator-Timestamp"
SIGNATURE_HEADER = "X-Remediator-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value a sender puts in X-Remediator-Signature."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


class SignatureCheck:
    """Verifies signatures and remembers those seen within the window (replays are refused)."""

    def __init__(self, secret: str, window_s: int):
        self.secret = secret
        self.window_s = window_s
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> None:
        """AuthError (401) saying what is wrong; None when the body is signed, fresh and new."""
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
        with self._lock:   # keyed on the signature as computed, so no spelling of the header replays it
            self._seen = {s: t for s, t in self._seen.items() if t > now - self.window_s}
            if expected in self._seen:
                raise AuthError("this signed request was already received (a replay); sign each request anew")
            self._seen[expected] = ts
