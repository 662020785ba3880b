"""The incident lifecycle as data: its states, which moves are allowed, and the states of runs and approvals.

    received -> diagnosing -> planned -> denied | checking
    checking -> awaiting_approval -> approved -> checking (again) | rejected | expired
    checking -> executing -> verifying -> resolved | failed | escalated

`engine.pipeline.lifecycle` enforces TRANSITIONS; nothing else writes an incident's state.
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["IncidentState", "FINAL_STATES", "HELD_STATES", "TRANSITIONS", "RunState", "RunMode", "ApprovalState",
           "NotifyEvent"]


class IncidentState(StrEnum):
    RECEIVED = "received"
    DIAGNOSING = "diagnosing"
    PLANNED = "planned"
    DENIED = "denied"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CHECKING = "checking"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    FAILED = "failed"
    ESCALATED = "escalated"


S = IncidentState
FINAL_STATES = frozenset({S.DENIED, S.REJECTED, S.EXPIRED, S.RESOLVED, S.FAILED, S.ESCALATED})
#: States in which a worker holds the incident, and so its host (one remediation per host at a time).
HELD_STATES = frozenset({S.DIAGNOSING, S.PLANNED, S.CHECKING, S.EXECUTING, S.VERIFYING})

#: Every move an incident may make. A held state may always escalate (an internal error) and go back to
#: received (a restart: worked again from the start, never re-run blindly).
TRANSITIONS: dict[IncidentState, frozenset[IncidentState]] = {
    S.RECEIVED: frozenset({S.DIAGNOSING, S.ESCALATED,      # claimed; or no inventory host, escalated at intake
                           S.RESOLVED}),                   # its alert resolved before anything ran
    S.DIAGNOSING: frozenset({S.PLANNED, S.ESCALATED, S.RECEIVED,
                             S.VERIFYING}),                # a verify cut off by a restart is verified again
    S.PLANNED: frozenset({S.CHECKING, S.DENIED, S.ESCALATED, S.RECEIVED}),
    S.CHECKING: frozenset({S.AWAITING_APPROVAL, S.EXECUTING, S.DENIED, S.ESCALATED, S.RECEIVED,
                           S.RESOLVED}),                   # the alert resolved before the real run
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.RESOLVED}),
    S.APPROVED: frozenset({S.CHECKING, S.RESOLVED}),
    S.EXECUTING: frozenset({S.VERIFYING, S.FAILED, S.ESCALATED, S.RECEIVED}),
    S.VERIFYING: frozenset({S.RESOLVED, S.ESCALATED, S.RECEIVED}),
    **{final: frozenset() for final in FINAL_STATES},
}


class RunState(StrEnum):
    """A run's row in the store: running until it ends (then a RunStatus value), or interrupted by a restart."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"


class RunMode(StrEnum):
    DIAGNOSE = "diagnose"
    CHECK = "check"
    APPLY = "apply"
    VERIFY = "verify"


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELED = "canceled"


class NotifyEvent(StrEnum):
    """What people are told about an incident (remediator/engine/outbound/notify.py words and sends it)."""

    FIXED = "fixed"                          # remediated and verified
    AUTO_RESOLVED = "auto_resolved"          # the alert cleared before anything ran
    AWAITING_APPROVAL = "awaiting_approval"
    ESCALATED = "escalated"                  # a person must look (no runbook, unknown host, not fixed, ...)
    DENIED = "denied"
    FAILED = "failed"
    EXPIRED = "expired"
    REJECTED = "rejected"
    BREAKER_OPEN = "breaker_open"            # repeated failures: automatic runs paused
