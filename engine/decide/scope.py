"""What an action may touch: the allow-lists an operator declares per host or group in the inventory.

A remediation names in its metadata (`scope:`) which parameter holds the unit or service it acts on and which
inventory lists bound it (`remediator_services`, or a list of its own such as `remediator_pool_services`). A
value on no list is out of scope, whatever the label, the runbook or the model said; a host that declares
none of the lists allows nothing. remediator never acts on itself.
"""
from __future__ import annotations

import fnmatch
from typing import Any

from engine.catalog.loader import CatalogEntry
from engine.intake.targets import Inventory

__all__ = ["out_of_scope", "unit_name"]

_SELF = "remediator"


def unit_name(value: str) -> str:
    """systemd's reading of a name: `webapp` is `webapp.service`; `ssh.socket` stays a socket."""
    name = value.strip()
    return name if "." in name.rsplit("@", 1)[-1] else f"{name}.service"


def out_of_scope(entry: CatalogEntry, params: dict[str, Any], host: str, inventory: Inventory) -> str | None:
    """Why the action is outside what the inventory allows on `host` (None: within every declared scope)."""
    for scope in entry.meta.scope:
        value = str(params.get(scope.param, ""))
        unit = unit_name(value)
        if unit.split("@")[0].split(".")[0].startswith(_SELF):
            return f"{entry.id} never acts on remediator itself ({scope.param} {value!r})"
        found = inventory.allow_list(host, scope.lists)
        if found is None:
            return (f"{host} declares no allow-list for {entry.id} ({' or '.join(scope.lists)} in the inventory): "
                    f"nothing is in scope there")
        name, allowed = found
        if not any(fnmatch.fnmatchcase(unit, unit_name(pattern)) for pattern in allowed):
            return f"{scope.param} {value!r} is not on {host}'s {name} ({', '.join(allowed) or 'empty'})"
    return None
