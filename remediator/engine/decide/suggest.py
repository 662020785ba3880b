"""Suggestions that would widen policy: read from history, shown with a backtest, never applied by themselves.

`remediator policy suggest` looks for scopes (entry x inventory group x alertname) where a rule asked for a person,
people approved, and every such run verified, at least `suggest_min_approved` times and never failed. For each it
prints the rule with an exception for that scope (a diff a person may commit to policies/) and a backtest: the past
incidents whose verdict the changed rule would have changed. Widening is a person's decision; tightening is not
(remediator/engine/decide/breaker.py).
"""
from __future__ import annotations

import difflib
import json
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml
from pydantic import BaseModel
from sqlalchemy import select

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.catalog.loader import Catalog
from remediator.engine.decide.policy import PolicyContext, load_policy
from remediator.engine.model.states import ApprovalState, IncidentState, RunMode
from remediator.engine.store.db import Store
from remediator.engine.store.tables import Approval, Incident, Run

__all__ = ["Suggestion", "suggest"]

_FAILED = {IncidentState.FAILED.value, IncidentState.ESCALATED.value}


class Suggestion(BaseModel):
    scope: str                    # entry|group|alertname
    rule: str                     # the rule that asked for a person there
    file: str
    approved_and_verified: int
    diff: str
    changed: list[str]            # incidents whose verdict the changed rule would have changed (approve -> allow)


def suggest(store: Store, policies_dir: Path, catalog: Catalog, inventory: Inventory, min_approved: int) -> list[Suggestion]:
    """Every scope that earned a suggestion, with its diff and backtest."""
    earned: dict[tuple[str, str, str, str], int] = defaultdict(int)
    failed: set[tuple[str, str, str]] = set()
    with store.read() as session:
        applied = select(Run.incident_id).where(Run.mode == RunMode.APPLY)
        done = session.execute(select(Incident).where(Incident.id.in_(applied), Incident.entry.is_not(None))).scalars().all()
        approved = set(session.execute(select(Approval.incident_id).where(Approval.state == ApprovalState.APPROVED)).scalars())
        past = [i for i in session.execute(select(Incident).where(Incident.entry.is_not(None))).scalars() if i.proposal]
    for inc in done:
        for group in inventory.hosts.get(inc.host or "", []):
            scope = (str(inc.entry), group, inc.alertname)
            if inc.state in _FAILED:
                failed.add(scope)
            elif inc.state == IncidentState.RESOLVED and inc.id in approved and inc.decision is not None:
                for rule in inc.decision.rules:
                    earned[(*scope, rule)] += 1
    out = []
    for (entry, group, alertname, rule), n in sorted(earned.items()):
        if n < min_approved or (entry, group, alertname) in failed:
            continue
        found = _rule_file(policies_dir, rule)
        if found is None:   # the rule was renamed or removed since
            continue
        path, before, after = found[0], found[1], _with_exception(found[1], entry, group, alertname)
        diff = "".join(difflib.unified_diff(yaml.safe_dump([before], sort_keys=False, width=10_000).splitlines(keepends=True),
                                            yaml.safe_dump([after], sort_keys=False, width=10_000).splitlines(keepends=True),
                                            fromfile=f"{path.name} (now)", tofile=f"{path.name} (suggested)"))
        changed = _backtest(policies_dir, path, rule, after, catalog, inventory, past)
        out.append(Suggestion(scope=f"{entry}|{group}|{alertname}", rule=rule, file=str(path), approved_and_verified=n,
                              diff=diff, changed=changed))
    return out


def _rule_file(policies_dir: Path, name: str) -> tuple[Path, dict] | None:
    for path in sorted(policies_dir.glob("*.yml")):
        for rule in (yaml.safe_load(path.read_text()) or {}).get("rules") or []:
            if rule.get("name") == name:
                return path, rule
    return None


def _with_exception(rule: dict, entry: str, group: str, alertname: str) -> dict:
    # JSON string literals are CEL string literals: the names cannot break out of them
    scope = (f"entry.id == {json.dumps(entry)} && {json.dumps(group)} in host_groups"
             f" && labels.alertname == {json.dumps(alertname)}")
    return {**rule, "when": f"({rule.get('when', 'true')}) && !({scope})"}


def _backtest(policies_dir: Path, path: Path, name: str, changed_rule: dict, catalog: Catalog, inventory: Inventory,
              past: list[Incident]) -> list[str]:
    """The past incidents whose verdict the changed rule changes (history counts are not replayed: zero)."""
    now = load_policy(policies_dir, catalog, inventory)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(policies_dir, tmp, dirs_exist_ok=True)
        doc = yaml.safe_load(path.read_text())
        doc["rules"] = [changed_rule if r.get("name") == name else r for r in doc["rules"]]
        (Path(tmp) / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        then = load_policy(Path(tmp), catalog, inventory)
    changed = []
    for inc in past:
        if inc.proposal is None or inc.host is None or inc.host not in inventory.hosts:
            continue
        ctx = PolicyContext(incident_host=inc.host, severity=inc.severity, labels=inc.labels)
        if now.decide(inc.proposal, ctx)[0].verdict != then.decide(inc.proposal, ctx)[0].verdict:
            changed.append(inc.id)
    return changed
