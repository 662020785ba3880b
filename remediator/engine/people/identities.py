"""Who is asking: the service tokens of the settings, or a person (an approver) with a role.

Service tokens (REMEDIATOR_TOKENS) are what Alertmanager and other machines send; they may post
alerts and read, never approve: the engine must not approve its own requests. A token written
`name:secret` is known by that name (stored with each delivery it posts, and in the audit); any
other is `service-N`, N its place in the list. Either way the whole string is the bearer token. People are rows in
`approvers`, with a role:
    viewer    reads incidents and approvals
    approver  also approves or rejects
    admin     also adds and removes approvers
A person's token is `rmd_<token_id>_<secret>`, shown once when issued; the store keeps an argon2id
hash of the secret, found by token_id. Verified tokens are remembered for a minute (a hash per API
call would cost more than the call).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from remediator.engine.errors import AuthError, ConflictError, Forbidden, NotFound
from remediator.engine.model.roles import Role
from remediator.engine.settings import NAMED_TOKEN
from remediator.engine.store import audit
from remediator.engine.store.db import Store
from remediator.engine.store.tables import Approver, utcnow

__all__ = ["Role", "Identity", "Identities", "TOKEN_PREFIX", "service_name"]

TOKEN_PREFIX = "rmd_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_RESERVED = {"remediator", "engine", "service", "system", "root", "anonymous"}
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")   # Slack's user ids: U… (W… on Enterprise Grid)
# OWASP's argon2id minimum (19 MiB, 2 passes): the secret is random, so this only needs to be slow-ish.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)




_RANK = {Role.SERVICE: 0, Role.VIEWER: 1, Role.APPROVER: 2, Role.ADMIN: 3}


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    approver_id: str | None = None      # None for service tokens

    @property
    def is_person(self) -> bool:
        return self.approver_id is not None

    def require(self, role: Role, doing: str) -> None:
        """Forbidden unless this identity is a person with at least `role`."""
        if not self.is_person:
            raise Forbidden(f"a service token may not {doing}: remediator never approves its own requests; "
                            f"use an approver's token (`remediator approvers add NAME`)")
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"{self.name} is {self.role}; to {doing} takes the {role} role")


def service_name(token: str, position: int) -> str:
    """A service token's name: `name` of `name:secret`, else `service-<position>` (1-based)."""
    named = NAMED_TOKEN.match(token)
    return named.group(1) if named else f"service-{position}"


class Identities:
    """Service tokens from the settings plus approvers from the store."""

    def __init__(self, store: Store, service_tokens: list[str]):
        self.store = store
        self._service = [t.encode() for t in service_tokens]
        self.service_names = [service_name(t, n) for n, t in enumerate(service_tokens, 1)]
        self._cache: dict[str, tuple[float, Identity]] = {}
        self._lock = threading.Lock()

    # ---- authentication ------------------------------------------------------------------

    def authenticate(self, token: str) -> Identity:
        """The identity a bearer token stands for; AuthError when it stands for none."""
        given = token.strip().encode()
        # Every service token is compared, each in constant time, so timing says nothing about which.
        matches = [hmac.compare_digest(given, t) for t in self._service]
        if any(matches):
            return Identity(name=self.service_names[matches.index(True)], role=Role.SERVICE)
        if token.startswith(TOKEN_PREFIX):
            person = self._person(token.strip())
            if person is not None:
                return person
            raise AuthError("the approver token is not valid (unknown, revoked or mistyped)")
        raise AuthError("the bearer token is not one of the configured tokens")

    def _person(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        try:
            _, token_id, secret = token.split("_", 2)
        except ValueError:
            return None
        with self.store.read() as session:
            row = session.execute(select(Approver).where(Approver.token_id == token_id,
                                                         Approver.disabled_at.is_(None))).scalar_one_or_none()
            if row is None:
                return None
            try:
                _HASHER.verify(row.token_hash, secret)
            except (VerificationError, InvalidHashError):
                return None
            identity = Identity(name=row.name, role=Role(row.role), approver_id=row.id)
        with self._lock:
            self._cache[key] = (time.monotonic() + 60, identity)
        return identity

    def by_id(self, approver_id: str) -> Identity | None:
        """A person by id, if still enabled (the pages' sessions carry the id)."""
        with self.store.read() as session:
            row = session.get(Approver, approver_id)
            if row is None or row.disabled_at is not None:
                return None
            return Identity(name=row.name, role=Role(row.role), approver_id=row.id)

    def by_slack(self, slack_user: str) -> Identity | None:
        """The person whose Slack user id this is (`approvers add NAME --slack ID`), if still enabled."""
        with self.store.read() as session:
            row = session.execute(select(Approver).where(Approver.slack_user == slack_user,
                                                         Approver.disabled_at.is_(None))).scalar_one_or_none()
            return None if row is None else Identity(name=row.name, role=Role(row.role), approver_id=row.id)

    # ---- management ----------------------------------------------------------------------

    def add(self, name: str, role: str, by: str = "the command line", slack_user: str | None = None
            ) -> tuple[Identity, str]:
        """A new person and their token (shown this once; only its hash is kept); audited, with who added them.
        `slack_user`: their Slack user id, so that their clicks on an approval request in Slack are theirs."""
        if slack_user is not None and not SLACK_USER.match(slack_user):
            raise ConflictError(f"Slack user id {slack_user[:40]!r}: it looks like U0123ABCD (the member ID in their "
                                "Slack profile, not a display name)")
        if not _NAME.match(name) or name.lower() in _RESERVED:
            raise ConflictError(f"approver name {name!r}: letters, digits and ._@- (up to 64), not one of {sorted(_RESERVED)}")
        if name.lower() in {s.lower() for s in self.service_names} or re.fullmatch(r"service-\d+", name.lower()):
            raise ConflictError(f"approver name {name!r} is a service token's name: a person and a sender are never the same")
        try:
            role_ = Role(role)
        except ValueError:
            role_ = Role.SERVICE
        if role_ == Role.SERVICE:
            raise ConflictError(f"role {role!r}: choose viewer, approver or admin")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        with self.store.write() as session:
            if session.execute(select(Approver).where(Approver.name == name)).scalar_one_or_none():
                raise ConflictError(f"an approver named {name} exists; remove it first to issue a new token")
            if slack_user and (other := session.execute(select(Approver.name).where(
                    Approver.slack_user == slack_user)).scalar_one_or_none()):
                raise ConflictError(f"Slack user {slack_user} is {other}'s already; one Slack user is one person")
            row = Approver(id=secrets.token_hex(8), name=name, role=role_.value, token_id=token_id,
                           token_hash=_HASHER.hash(secret), slack_user=slack_user)
            session.add(row)
            audit.append(session, "approver.added", {"name": name, "role": role_.value, "by": by,
                                                     **({"slack_user": slack_user} if slack_user else {})})
        return Identity(name=name, role=role_, approver_id=row.id), f"{TOKEN_PREFIX}{token_id}_{secret}"

    def remove(self, name: str, by: str = "the command line") -> None:
        """Revoke a person's token (the row stays: the audit trail names them); audited."""
        with self.store.write() as session:
            row = session.execute(select(Approver).where(Approver.name == name, Approver.disabled_at.is_(None))
                                  ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"no active approver named {name}")
            row.disabled_at = utcnow()
            row.name = f"{row.name}~{row.id}"   # frees the name for a new token
            audit.append(session, "approver.removed", {"name": name, "role": row.role, "by": by})
        with self._lock:
            self._cache.clear()

    def admins(self) -> list[str]:
        """The names of the enabled admins."""
        with self.store.read() as session:
            return list(session.execute(select(Approver.name).where(Approver.role == Role.ADMIN.value,
                                                                    Approver.disabled_at.is_(None))).scalars())

    def acting_admin(self, token: str | None, doing: str) -> str:
        """Who manages people from the command line, for the audit: once an admin exists, an admin's token is needed
        (the CLI opens the store itself, so nothing else would ask); before, the first people are added by the command
        line alone."""
        admins = self.admins()
        if not admins:
            return "the command line (no admin yet)"
        if not token:
            raise AuthError(f"an admin exists ({', '.join(sorted(admins)[:3])}): {doing} takes an admin's token "
                            "(--token or REMEDIATOR_APPROVER_TOKEN)")
        who = self.authenticate(token)
        who.require(Role.ADMIN, doing)
        return f"{who.name} (command line)"

    def list(self) -> list[dict[str, str]]:
        with self.store.read() as session:
            rows = session.execute(select(Approver).where(Approver.disabled_at.is_(None)).order_by(Approver.name)).scalars()
            return [{"name": r.name, "role": r.role, "created_at": r.created_at.isoformat() + "Z",
                     "slack_user": r.slack_user or ""} for r in rows]
