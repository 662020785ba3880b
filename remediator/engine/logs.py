"""Logging for `remediator serve`: one format, no request URLs from HTTP clients, no credentials in URLs.

httpx, httpcore and openai log every request's URL at INFO/DEBUG, and some URLs are secrets
themselves (a Slack incoming webhook is hooks.slack.com/services/T…/B…/<secret>). A configured URL
may carry a user and password (`http://admin:pw@prometheus:9090`): `redact()` drops them from any
text before it reaches a message, the store or a log line.
"""
from __future__ import annotations

import logging
import re

__all__ = ["configure", "quiet_clients", "redact"]

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\1***@", text)


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True

_NOISY = ("alembic", "httpx", "httpcore", "openai")


def quiet_clients() -> None:
    """Warnings and errors only from the HTTP clients (and alembic)."""
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_clients()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redact())
