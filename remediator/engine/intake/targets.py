"""Which inventory host an alert is about. A host not in the inventory is escalated, never guessed."""
from __future__ import annotations

from remediator.engine.catalog.inventory import Inventory

__all__ = ["host_from_labels"]


def host_from_labels(labels: dict[str, str], inventory: Inventory, label_order: list[str]) -> tuple[str | None, str]:
    """(host, how it was found) or (None, why not). Every target label the alert carries must name the same
    inventory host: a label that names none, or two that name different hosts, leave the alert for a person
    (otherwise a `host` label could retarget a fix that `instance` points elsewhere)."""
    present = [(label, labels[label]) for label in label_order if labels.get(label)]
    if not present:
        return None, f"the alert has none of the labels {', '.join(label_order)}"
    named = [(label, value, inventory.resolve(value)) for label, value in present]
    hosts = {host for _, _, host in named if host}
    if not hosts:
        return None, f"no inventory host matches {', '.join(f'{label}={value!r}' for label, value in present)}"
    if len(hosts) > 1 or any(host is None for _, _, host in named):
        said = "; ".join(f"{label}={value!r} is {host or 'no inventory host'}" for label, value, host in named)
        return None, f"the target labels disagree ({said}): a person must say which host this alert is about"
    label, value, host = named[0]
    return host, f"label {label}={value!r}" + (f" (and {len(named) - 1} more agreeing)" if len(named) > 1 else "")
