"""Whether a store lets the drills run as they expect, said before anything is broken (`demo`, `chaos run`).

The drills expect automatic runs. A store where earlier alerts opened a breaker, or where earlier fixes of the same
units on the same hosts are recent enough for policy's history rules to count (a restart's rate limit, a fix that
"keeps coming back" within the hour), holds some of them for a person: correctly, and they would fail without
saying why. Policy itself is asked (`judge()`, with the store's history), so an operator's own rules count too.
"""
from __future__ import annotations

from typing import Any

from remediator.engine.catalog.inventory import load_inventory
from remediator.engine.catalog.loader import Catalog, Drill
from remediator.engine.decide import breaker
from remediator.engine.decide.decision import Situation, StoreHistory, judge
from remediator.engine.decide.policy import load_policy
from remediator.engine.errors import ConfigError
from remediator.engine.model.records import ActionProposal, Verdict
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store, open_store

__all__ = ["check_ready"]

#: how far each verdict goes from "runs by itself"
_STRICTNESS = {Verdict.ALLOW: 0, Verdict.APPROVE: 1, Verdict.DENY: 2}
_OWN_STORE = "run it on a store of its own: remediator lab down; kill $(cat {data}/serve.pid); " \
             "REMEDIATOR_DATA_DIR=var/demo remediator demo"


def check_ready(settings: Settings, catalog: Catalog, drills: list[tuple[str, str | None, Drill]]) -> None:
    """Raise ConfigError naming what on this store would hold the drills for a person, and the ways on."""
    store = open_store(settings)
    store.prepare(settings.migrate_on_start)
    open_ = [b for b in breaker.status(store) if b.open]
    if open_:
        raise ConfigError(
            f"{len(open_)} circuit breaker scope(s) are open on the store in {settings.data_dir}, and every drill's "
            "automatic run would wait for a person: " + "; ".join(f"{b.scope} ({b.reason[:120]})" for b in open_)
            + ". Reset each (remediator breaker reset SCOPE, with an admin's token), or "
            + _OWN_STORE.format(data=settings.data_dir))
    held = held_by_history(settings, catalog, drills, store)
    if held:
        raise ConfigError(
            f"earlier fixes on the store in {settings.data_dir} are recent enough for policy to hold "
            f"{sum(map(len, held.values()))} drill(s) for a person, as it should: "
            + "; ".join(f"{', '.join(names)}: {why}" for why, names in held.items())
            + ". Wait an hour, or " + _OWN_STORE.format(data=settings.data_dir))


def held_by_history(settings: Settings, catalog: Catalog, drills: list[tuple[str, str | None, Drill]],
                    store: Store) -> dict[str, list[str]]:
    """The drills whose expected run policy would now judge stricter than the drill expects, by policy's reason."""
    inventory = load_inventory(settings.inventory)
    policy = load_policy(settings.policies_dir, catalog, inventory)
    history = StoreHistory(store)
    held: dict[str, list[str]] = {}
    for name, entry, drill in drills:
        if entry is None or drill.verdict is None:
            continue
        proposal = ActionProposal(entry=entry, params=_params(catalog, entry, drill.params, drill.alert),
                                  hosts=[drill.host], rationale="the drill's expected run", planner="runbook",
                                  offered=[entry])
        situation = Situation(alertname=drill.alert, labels={"alertname": drill.alert, **(drill.fire or {})},
                              annotations={}, severity=(drill.fire or {}).get("severity", "critical"), host=drill.host,
                              ref=f"drill-{name}")
        verdict, _ = judge(situation, proposal, catalog=catalog, policy=policy, history=history)
        if _STRICTNESS[verdict.verdict] > _STRICTNESS[Verdict(drill.verdict)]:
            held.setdefault(f"{verdict.verdict.value}, {verdict.reasons[0]}", []).append(f"{name} ({entry} on {drill.host})")
    return held


def _params(catalog: Catalog, entry: str, expected: dict[str, Any], alertname: str) -> dict[str, Any]:
    """The drill's expected parameters, with any other required text one filled as a runbook would (a reason)."""
    params = dict(expected)
    for name, spec in catalog.get(entry).params.items():
        if name not in params and spec.required and spec.type == "str":
            params[name] = f"{alertname} (drill)"
    return params
