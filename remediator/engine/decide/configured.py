"""The planner the settings name: the runbook planner, or the LLM planner with the runbook planner behind it."""
from __future__ import annotations

from remediator.engine.catalog.loader import Catalog
from remediator.engine.decide.planners import Planner, RunbookPlanner, load_runbooks
from remediator.engine.settings import Settings

__all__ = ["make_planner"]


def make_planner(settings: Settings, catalog: Catalog, name: str | None = None) -> Planner:
    """runbook (the default), or llm when the settings (or `name`) say so."""
    runbooks = RunbookPlanner(load_runbooks(settings.runbooks_dir, catalog), catalog)
    if (name or settings.planner) == "llm":
        # imported here: the openai client takes a second to import, which every serve start and CLI call paid
        from remediator.engine.decide.llm import LLMPlanner
        return LLMPlanner(settings, catalog, fallback=runbooks)
    return runbooks
