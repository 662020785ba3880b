"""Dependencies: a service that fails because what it needs is down is not fixed by acting on it.

The inventory may declare, per host or group, what each service needs on the host (`remediator_depends_on:
{webapp: [api-gateway]}`). Before the engine acts on an alert about a service, or reports on one, it reads each of
those units with the read-only `service_status` diagnostic; the first one that is not running is where the fault
likely is, and the incident escalates naming it (restarting the victim would hide the cause, and its own alert, if
it has one, is worked on its own). A dependency that cannot be read (not on the host's allow-lists) is not guessed
at: its outcome stays in the incident's evidence, and the decision goes on without it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.model.records import Escalation

if TYPE_CHECKING:
    from remediator.engine.decide.evidence import DiagnosticOutcome

__all__ = ["dependency_down"]

PLANNER = "dependencies"


def dependency_down(inventory: Inventory, host: str, labels: dict[str, str],
                    diagnose: Callable[[str, dict[str, Any]], DiagnosticOutcome]) -> Escalation | None:
    """An escalation naming the first declared dependency of the alert's service that is down on the host (None: the
    service declares none, or all of them run)."""
    service = labels.get("service", "")
    for unit in inventory.depends_on(host, service) if service else []:
        report = diagnose("service_status", {"unit": unit}).report
        if report is not None and report.get("active_state") != "active":
            ended = ", ".join(f"{k} {report[k]}" for k in ("result", "error_line") if report.get(k))
            return Escalation(planner=PLANNER, reason=(
                f"{service} depends on {unit} on {host} (the inventory's remediator_depends_on), and {unit} is "
                f"{report.get('active_state')} ({report.get('sub_state')}{'; ' + ended if ended else ''}): the fault is "
                f"likely there. Look at {unit} first; acting on {service} would not fix it"))
    return None
