"""Domain errors. One base; the API and the CLI turn them into answers in one place each.

RemediatorError                 anything a user can act on; .status is the HTTP answer
├── ConfigError                 settings, catalog, policies or runbooks are wrong (fail closed at start)
├── PayloadError                a webhook body is not acceptable (4xx; Alertmanager drops it)
├── AuthError                   missing or wrong credentials (401)
├── Forbidden                   the identity may not do this (403: wrong role, a service token approving)
├── NotFound                    no such incident, entry or approval (404)
├── ConflictError               the request does not fit the current state (409)
├── ProposalError               a planner's proposal is not valid data (unknown entry, bad parameter)
├── StoreUnavailable            the store cannot take the write now (503; Alertmanager retries)
└── IllegalTransition           a move the incident lifecycle does not allow (a bug: 500)
"""

__all__ = [
    "RemediatorError", "ConfigError", "PayloadError", "AuthError", "Forbidden", "NotFound",
    "ConflictError", "ProposalError", "StoreUnavailable", "IllegalTransition",
]


class RemediatorError(Exception):
    """Base of every error remediator raises on purpose."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(RemediatorError):
    """A settings, catalog, policy or runbook file is wrong; the message names the file and key."""


class PayloadError(RemediatorError):
    """A webhook body is malformed or not acceptable."""

    status = 422

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class AuthError(RemediatorError):
    status = 401


class Forbidden(RemediatorError):
    status = 403


class NotFound(RemediatorError):
    status = 404


class ConflictError(RemediatorError):
    status = 409


class ProposalError(RemediatorError):
    """A proposal names an unknown entry, an undeclared parameter or a value of the wrong type."""

    status = 422


class StoreUnavailable(RemediatorError):
    status = 503


class LeaseLost(RemediatorError):
    """A worker's write for an incident whose lease is no longer its own (another replica took it over): refused,
    so a worker that froze past its lease never overwrites the new owner's work."""

    status = 409


class IllegalTransition(RemediatorError):
    """A move that remediator/engine/model/states.py's TRANSITIONS does not allow: a bug, never done silently."""
