"""Policy decides: allow, approve (a person must), or deny. Default deny.

Two layers:
1. structural checks in code, which no rule can relax: the entry exists, is a remediation, was
   offered to the planner for this incident; the parameters validate against the entry's spec;
   the hosts are in the inventory and are exactly the incident's host;
2. rules from policies/*.yml, each a CEL condition over the proposal and its context. Every rule
   that matches contributes its verdict and reason; the strictest wins (deny > approve > allow).
   No rule matched: deny.
After check mode, `review()` looks again with the Preview: a failed check, other hosts, or paths
outside the entry's allow-lists (the inventory's `path` scopes, and `preview_paths` in policy files) stop the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.catalog.loader import Catalog, EntryKind, RiskClass
from remediator.engine.decide.scope import allowed_roots, out_of_scope, under
from remediator.engine.errors import ConfigError, ProposalError
from remediator.engine.model.records import ActionProposal, PolicyDecision, Preview, Verdict

__all__ = ["Policy", "PolicyContext", "Rule", "load_policy"]

_SEVERITY = {Verdict.ALLOW: 0, Verdict.APPROVE: 1, Verdict.DENY: 2}


class PolicyContext(BaseModel):
    """What rules may look at besides the proposal (history comes from the store)."""

    model_config = ConfigDict(frozen=True)
    incident_host: str
    severity: str = "none"
    labels: dict[str, str] = {}
    same_action_last_hour: int = 0      # real runs of this entry on this host acting on the same unit/service
    same_fix_verified_last_hour: int = 0   # ... of those, the ones whose incident was fixed and verified
    entry_runs_last_hour: int = 0
    hour_utc: int = 0
    weekday: int = 0                    # Monday = 0


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    entries: list[str] | None = None       # None: every entry
    when: str = "true"                     # CEL
    verdict: Verdict
    reason: str
    approvers: int = Field(1, ge=1, le=3)  # for verdict approve: how many distinct people


class ReviewRule(BaseModel):
    """After check mode: the paths an entry may touch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    entry: str
    allowed_paths: list[str]


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = []
    preview_paths: list[ReviewRule] = []


class Policy:
    def __init__(self, rules: list[tuple[Rule, Any]], preview_paths: dict[str, list[str]], catalog: Catalog,
                 inventory: Inventory):
        self.rules = rules
        self.preview_paths = preview_paths
        self.catalog = catalog
        self.inventory = inventory

    def decide(self, proposal: ActionProposal, ctx: PolicyContext) -> tuple[PolicyDecision, dict[str, Any]]:
        """The verdict and, when not denied structurally, the validated parameters."""
        try:
            entry = self.catalog.get(proposal.entry)
        except ProposalError as exc:
            return self._deny("structure", exc.message), {}
        if entry.meta.kind != EntryKind.REMEDIATION:
            return self._deny("structure", f"{entry.id} is a diagnostic, not a remediation"), {}
        if proposal.entry not in proposal.offered:
            return self._deny("structure", f"{entry.id} was not offered to the {proposal.planner} planner for this incident"), {}
        try:
            params = entry.validate_params(proposal.params)
        except ProposalError as exc:
            return self._deny("structure", exc.message), {}
        unknown = [h for h in proposal.hosts if h not in self.inventory.hosts]
        if unknown:
            return self._deny("structure", f"hosts not in the inventory: {', '.join(unknown)}"), {}
        if proposal.hosts != [ctx.incident_host]:
            return self._deny("structure", f"hosts {proposal.hosts} are outside the alert's scope ({ctx.incident_host})"), {}
        beyond = out_of_scope(entry, params, ctx.incident_host, self.inventory)
        if beyond is not None:
            return self._deny("inventory-allow-list", beyond), params

        facts: dict[str, Any] = {
            "entry": {"id": entry.id, "risk": str(entry.meta.risk), "read_only": entry.meta.read_only},
            "params": params, "hosts": proposal.hosts, "host_groups": self.inventory.hosts[ctx.incident_host],
            "environment": self.inventory.environment(ctx.incident_host), "severity": ctx.severity,
            "labels": ctx.labels, "planner": proposal.planner,
            "history": {"same_action_last_hour": ctx.same_action_last_hour,
                        "same_fix_verified_last_hour": ctx.same_fix_verified_last_hour,
                        "entry_runs_last_hour": ctx.entry_runs_last_hour},
            "time": {"hour_utc": ctx.hour_utc, "weekday": ctx.weekday},
        }
        activation = {k: celpy.json_to_cel(v) for k, v in facts.items()}
        matched: list[Rule] = []
        for rule, program in self.rules:
            if rule.entries is not None and entry.id not in rule.entries:
                continue
            try:
                result = program.evaluate(activation)
            except celpy.CELEvalError as exc:
                return self._deny(rule.name, f"rule {rule.name} could not be evaluated ({exc}); denying"), {}
            if not isinstance(result, celtypes.BoolType):   # a rule that is not a yes or no must not count as one
                return self._deny(rule.name, f"rule {rule.name} answered {type(result).__name__}, not a bool; denying"), {}
            if result:
                matched.append(rule)
        if not matched:
            return self._deny("default-deny", f"no policy rule allows {entry.id} here (default deny)"), params
        verdict = max((r.verdict for r in matched), key=_SEVERITY.__getitem__)
        deciding = [r for r in matched if r.verdict == verdict]
        # High-risk entries take two people whatever the rules say; a rule may ask for more.
        approvers = max([r.approvers for r in deciding] + [2 if entry.meta.risk == RiskClass.HIGH else 1])
        return PolicyDecision(verdict=verdict, reasons=[r.reason for r in deciding], rules=[r.name for r in deciding],
                              approvers=approvers if verdict == Verdict.APPROVE else 1), params

    def review(self, proposal: ActionProposal, preview: Preview) -> PolicyDecision | None:
        """After check mode: a reason to stop, or None when the preview is within bounds."""
        if not preview.ok:
            return self._deny("preview", f"the dry run failed: {preview.summary}")
        other = sorted({h.host for h in preview.hosts} - set(proposal.hosts))
        if other:
            return self._deny("preview", f"the dry run touched hosts outside the proposal: {', '.join(other)}")
        for allowed in self._path_bounds(proposal):
            outside = [p for p in preview.touched_paths() if not under(p, allowed)]
            if outside:
                return self._deny("preview", f"the dry run would touch paths outside the allow-list: {', '.join(outside[:5])}")
        return None

    def _path_bounds(self, proposal: ActionProposal) -> list[list[str]]:
        """The directory lists the preview's paths must each fall under: the policy files' and the inventory's."""
        bounds = [self.preview_paths[proposal.entry]] if proposal.entry in self.preview_paths else []
        if proposal.entry in self.catalog.entries and len(proposal.hosts) == 1:
            roots = allowed_roots(self.catalog.get(proposal.entry), proposal.hosts[0], self.inventory)
            if roots is not None:
                bounds.append(roots)
        return bounds

    @staticmethod
    def _deny(rule: str, reason: str) -> PolicyDecision:
        return PolicyDecision(verdict=Verdict.DENY, reasons=[reason], rules=[rule])


def load_policy(directory: Path, catalog: Catalog, inventory: Inventory) -> Policy:
    """Every policies/*.yml; CEL compiled now, so a bad rule fails at start-up, naming file and rule."""
    env = celpy.Environment()
    rules: list[tuple[Rule, Any]] = []
    preview_paths: dict[str, list[str]] = {}
    files = sorted(directory.glob("*.yml"))
    if not files:
        raise ConfigError(f"{directory}: no policy files; without rules everything is denied")
    for path in files:
        try:
            doc = PolicyFile.model_validate(yaml.safe_load(path.read_text()) or {})
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ConfigError(f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        for rule in doc.rules:
            for name in rule.entries or []:
                if name not in catalog.entries:
                    raise ConfigError(f"{path}: rule {rule.name}: unknown entry {name!r}")
            try:
                rules.append((rule, env.program(env.compile(rule.when))))
            except celpy.CELParseError as exc:
                raise ConfigError(f"{path}: rule {rule.name}: bad CEL condition: {exc}") from None
        for r in doc.preview_paths:
            preview_paths[r.entry] = r.allowed_paths
    # Default deny must not become default allow for a new safe entry: each remediation is bounded by the
    # inventory's allow-lists (its scope) or by a deny rule that names it.
    bounded = {name for rule, _ in rules if rule.verdict == Verdict.DENY for name in rule.entries or []}
    loose = [e.id for e in catalog.of_kind(EntryKind.REMEDIATION) if not e.meta.scope and e.id not in bounded]
    if loose:
        raise ConfigError(f"{directory}: nothing bounds what {', '.join(loose)} may act on: declare a scope in its "
                          "meta/remediator.yml (an inventory allow-list) or a deny rule with `entries:` naming it")
    return Policy(rules, preview_paths, catalog, inventory)
