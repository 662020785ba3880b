"""Who may do what: the roles of tokens and people (remediator/engine/people/identities.py holds who has which)."""
from __future__ import annotations

from enum import StrEnum
from typing import Protocol

__all__ = ["Role", "Actor"]


class Role(StrEnum):
    """From least to most: a service token, then people who view, approve, administer."""

    SERVICE = "service"     # a machine token from the settings
    VIEWER = "viewer"
    APPROVER = "approver"
    ADMIN = "admin"


class Actor(Protocol):
    """Someone acting through a token (people/identities.py's Identity): the domain asks it to hold a role."""

    @property
    def name(self) -> str: ...

    def require(self, role: Role, doing: str) -> None:
        """Raise Forbidden unless this actor holds at least `role`."""
        ...
