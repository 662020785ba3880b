"""The records that cross module boundaries: proposals, decisions, previews, run results."""
from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

__all__ = [
    "ESCALATE", "Verdict", "Figure", "Report", "ActionProposal", "Escalation", "ToolCallRecord", "Transcript",
    "PolicyDecision", "TaskResult", "HostPreview", "Preview", "RunStatus", "RunResult",
]


#: What a planner (or the eval) answers when no catalog entry fits: the incident goes to a person.
ESCALATE = "escalate"


class Verdict(StrEnum):
    ALLOW = "allow"
    APPROVE = "approve"
    DENY = "deny"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Figure(_Frozen):
    """One line of a report: what was measured or read, and its value as a person reads it."""

    label: str
    value: str


class Report(_Frozen):
    """A Level 2 diagnosis (remediator/engine/decide/reports.py): the evidence as numbers, the likely cause and the evidence that
    points to it, and a proposal that waits for a person, or what a person should look at first."""

    kind: str                                   # the alert class, as the runbook names it: "memory growth"
    figures: list[Figure] = []
    cause: str
    pointing: list[Figure] = []
    proposal: str = ""                          # "restart_service unit=webapp": a person decides on its dry run
    look_first: str = ""                        # no catalog action fits: where a person starts
    unread: list[str] = []                      # evidence that could not be read, and why
    narrative: str = ""                         # the model's words over the same evidence (planner: llm)

    def lines(self) -> list[str]:
        """The report as plain lines (CLI, chat messages)."""
        out = [f"Diagnosis ({self.kind}): {self.cause}"]
        out += [f"  {f.label}: {f.value}" for f in self.figures]
        if self.pointing:
            out.append("  points to it: " + "; ".join(f"{f.label} {f.value}" for f in self.pointing))
        if self.proposal:
            out.append(f"  proposal (a person decides, on its dry run): {self.proposal}")
        if self.look_first:
            out.append(f"  no catalog action fits; look first at: {self.look_first}")
        out += [f"  not read: {u}" for u in self.unread]
        if self.narrative:
            out.append(f"  the model's reading: {self.narrative}")
        return out


class ActionProposal(_Frozen):
    """A planner's choice: one catalog entry, its parameters, the hosts. Data, never a command."""

    entry: str
    params: dict[str, Any]
    hosts: list[str]
    rationale: str
    evidence: list[str] = []
    planner: str
    offered: list[str] = Field(default_factory=list, description="entries the planner was offered")
    fallback: str = Field("", description="why the configured planner was not the one that answered")
    needs_person: str = Field("", description="why a person decides whatever policy allows (a Level 2 proposal)")


class Escalation(_Frozen):
    """A planner's answer when no catalog entry fits: a person must look."""

    reason: str
    planner: str
    fallback: str = ""


class ToolCallRecord(_Frozen):
    """One tool call of a model: what it asked, whether it was valid, what it got back."""

    round: int
    name: str
    arguments: str                  # as the model sent it (may not even be JSON)
    kind: str                       # diagnostic | remediation | escalate | unknown
    valid: bool
    error: str = ""
    result: str = ""                # what went back to the model (capped)


class Transcript(BaseModel):
    """A planner's whole conversation with a model, kept with the incident so it can be replayed."""

    planner: str
    model: str
    base_url: str
    mode: str = ""                  # how the model called tools: tools (native) | json_schema (structured output)
    messages: list[dict[str, Any]] = []
    calls: list[ToolCallRecord] = []
    rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: list[int] = []
    outcome: str = ""               # proposal | escalation | fallback
    fallback_reason: str = ""


class PolicyDecision(_Frozen):
    verdict: Verdict
    reasons: list[str]
    rules: list[str] = []
    approvers: int = 1          # distinct people who must approve (verdict approve)


class TaskResult(_Frozen):
    task: str
    status: str  # ok | changed | failed | skipped | unreachable
    changed: bool = False
    msg: str = ""
    diff: str = ""
    items: list[str] = []
    paths: list[str] = []


class HostPreview(_Frozen):
    host: str
    tasks: list[TaskResult]
    changed: int
    failed: bool
    unreachable: bool


class Preview(_Frozen):
    """The check-mode run, per host and task, and a paragraph a person can read."""

    entry: str
    hosts: list[HostPreview]
    summary: str
    ok: bool
    params: dict[str, Any] = {}                 # what the run was given
    facts: dict[str, dict[str, Any]] = {}       # per host: the inventory facts policy used (groups, allow-lists)
    inventory: str = ""                         # sha256 of the inventory the run read (any edit asks anew)

    @model_validator(mode="before")
    @classmethod
    def _digest_is_derived(cls, data: Any) -> Any:
        # a stored preview carries its digest; it is computed again from what would change, never trusted
        return {k: v for k, v in data.items() if k != "digest"} if isinstance(data, dict) else data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def digest(self) -> str:
        """Hash of what would be run and change (for binding an approval to exactly this preview): the entry, its
        parameters, the hosts with the inventory facts used, the inventory's own hash, and each changed task with its
        diff, items and message."""
        material = {"entry": self.entry, "params": self.params, "facts": self.facts,
                    "hosts": [(h.host, [(t.task, t.status, t.diff, t.items, t.msg) for t in h.tasks if t.changed])
                              for h in self.hosts]}
        if self.inventory:   # a preview stored before it was recorded keeps its digest
            material["inventory"] = self.inventory
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def touched_paths(self) -> list[str]:
        return sorted({p for h in self.hosts for t in h.tasks if t.changed for p in t.paths})


class RunStatus(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    ERROR = "error"


class RunResult(_Frozen):
    ident: str
    entry: str
    check: bool
    status: RunStatus
    rc: int | None
    preview: Preview
    reports: dict[str, dict[str, Any]] = {}   # host -> the diagnostic's <entry>_report fact
    artifact_dir: str
    duration_s: float
    then: list[RunResult] = []   # read-only diagnostics that ran right after it, in the same invocation
