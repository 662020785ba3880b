"""Logging for `remediator serve`: one format, and no request URLs from HTTP clients.

httpx, httpcore and openai log every request's URL at INFO/DEBUG, and some URLs are secrets
themselves (a Slack incoming webhook is hooks.slack.com/services/T…/B…/<secret>).
"""
from __future__ import annotations

import logging

__all__ = ["configure", "quiet_clients"]

_NOISY = ("alembic", "httpx", "httpcore", "openai")


def quiet_clients() -> None:
    """Warnings and errors only from the HTTP clients (and alembic)."""
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_clients()
