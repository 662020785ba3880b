"""The composition root: what the engine runs with, loaded once from the settings; nothing here runs.

`Parts.load(settings)` opens and migrates the store and the inbox, loads the catalog, the inventory, the policy and
the planner, and makes the executor; `Engine(parts)` (service.py) only runs them. A configuration problem (catalog,
inventory, policies, runbooks) fails here, naming the file. A caller that already holds a loaded part hands it in
(the tests load the shipped catalog, inventory and policy once per session), and a fake stands in the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

from remediator.engine.catalog.inventory import Inventory, load_inventory
from remediator.engine.catalog.loader import Catalog, load_catalog
from remediator.engine.decide.configured import make_planner
from remediator.engine.decide.decision import Clock, system_clock
from remediator.engine.decide.planners import Planner
from remediator.engine.decide.policy import Policy, load_policy
from remediator.engine.decide.reports import Query
from remediator.engine.errors import ConfigError
from remediator.engine.intake.inbox import Inbox
from remediator.engine.run.runner import AnsibleExecutor, Executor
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store, open_store

__all__ = ["Parts"]


@dataclass(frozen=True)
class Parts:
    """Everything an `Engine` is built from. `query` is how Level 2 reports ask Prometheus (None: the configured
    Prometheus, if any)."""

    settings: Settings
    store: Store
    inbox: Inbox
    catalog: Catalog
    inventory: Inventory
    policy: Policy
    planner: Planner
    executor: Executor
    clock: Clock = system_clock
    query: Query | None = None

    @classmethod
    def load(cls, settings: Settings, *, executor: Executor | None = None, clock: Clock = system_clock,
             query: Query | None = None, catalog: Catalog | None = None, inventory: Inventory | None = None,
             policy: Policy | None = None) -> Parts:
        """Each part the settings name, except those handed in; the store migrated (when migrate_on_start)."""
        store = open_store(settings)
        if settings.role != "all" and store.is_sqlite:
            raise ConfigError(f"role {settings.role} needs the replicas to share a PostgreSQL store (database_url: "
                              "postgresql+psycopg://...); on SQLite one serve does everything (role all; docs/scaling.md)")
        store.prepare(settings.migrate_on_start)
        catalog = catalog or load_catalog(*settings.catalog_roots)
        inventory = inventory or load_inventory(settings.inventory)
        return cls(settings=settings, store=store, inbox=Inbox.open(settings, store), catalog=catalog,
                   inventory=inventory, policy=policy or load_policy(settings.policies_dir, catalog, inventory),
                   planner=make_planner(settings, catalog),
                   executor=executor or AnsibleExecutor(settings.data_dir / "runs", settings.inventory,
                                                        forks=settings.runner_forks, warm=settings.runner_warm,
                                                        warm_idle_s=settings.runner_warm_idle_s),
                   clock=clock, query=query)
