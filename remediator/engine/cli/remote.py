"""The command line against a running `remediator serve` over HTTP (`remediator --url URL …`, REMEDIATOR_URL), with a
person's token: approvals and incidents for people who live in a terminal, away from the server and its store. What
comes back is the API's own models, shown as the local commands show them; an answer that is not 2xx is one line."""
from __future__ import annotations

import os
from typing import Any

import httpx

from remediator.engine.errors import AuthError, ConfigError, ConflictError, Forbidden, NotFound, PayloadError, RemediatorError

__all__ = ["Remote", "remote", "use"]

_STATUS: dict[int, type[RemediatorError]] = {401: AuthError, 403: Forbidden, 404: NotFound, 409: ConflictError}
_url: list[str] = []


def use(url: str | None) -> None:
    """Set by the command line's `--url` (or REMEDIATOR_URL): the commands that can go remote do."""
    _url[:] = [url.rstrip("/")] if url else []


class Remote:
    """One serve's API, with a bearer token."""

    def __init__(self, url: str, token: str):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {url[:80]!r}: give the serve's address, e.g. https://remediator.example:8080")
        self.url = url
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; a domain error saying what the serve said (or that it cannot be reached)."""
        try:
            r = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot reach {self.url}: {exc}; check --url (REMEDIATOR_URL)") from None
        if r.is_success:
            return r.json()
        try:
            detail = str(r.json().get("detail", r.text))
        except ValueError:
            detail = r.text
        kind = _STATUS.get(r.status_code, PayloadError if r.status_code < 500 else ConfigError)
        hint = " (your token: --token or REMEDIATOR_APPROVER_TOKEN)" if r.status_code == 401 else ""
        raise kind(f"{self.url} answered {r.status_code}: {detail[:500]}{hint}")


def remote(token: str | None = None) -> Remote | None:
    """The serve to ask, when the command line names one; None: work on this host's store."""
    if not _url:
        return None
    token = token or os.environ.get("REMEDIATOR_APPROVER_TOKEN", "")
    if not token:
        raise ConfigError(f"--url {_url[0]} needs your token: set REMEDIATOR_APPROVER_TOKEN (from `remediator "
                          "approvers add`)")
    return Remote(_url[0], token)
