"""What an action may touch: the allow-lists an operator declares per host or group in the inventory.

A remediation names in its metadata (`scope:`) which parameter holds what it acts on (a unit, paths, file
name patterns) and which inventory lists bound it (`remediator_services`, or a list of its own such as
`remediator_pool_services` or `remediator_clean_paths`). A value on no list is out of scope, whatever the
label, the runbook or the model said; a host that declares none of the lists allows nothing. remediator never
acts on itself. The roles check the same lists on the host (defense in depth), and resolve symlinks there:
here paths are compared as text, so a root must be a real directory, not a link.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Any

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.catalog.loader import CatalogEntry

__all__ = ["allowed_roots", "out_of_scope", "template_of", "unit_name", "under"]

_SELF = "remediator"
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/-]*")


def unit_name(value: str) -> str:
    """systemd's reading of a name: `webapp` is `webapp.service`; `ssh.socket` stays a socket."""
    name = value.strip()
    return name if "." in name.rsplit("@", 1)[-1] else f"{name}.service"


def template_of(unit: str) -> str:
    """The template a unit is an instance of (`worker@9999.service` -> `worker@.service`); other units as they are."""
    name = unit_name(unit)
    if "@" not in name:
        return name
    prefix, rest = name.split("@", 1)
    return f"{prefix}@.{rest.rsplit('.', 1)[-1]}" if "." in rest else f"{prefix}@.service"


def out_of_scope(entry: CatalogEntry, params: dict[str, Any], host: str, inventory: Inventory) -> str | None:
    """Why the action is outside what the inventory allows on `host` (None: within every declared scope)."""
    for scope in entry.meta.scope:
        raw = params.get(scope.param)
        values = [str(v) for v in raw] if isinstance(raw, list) else [str(raw if raw is not None else "")]
        if scope.kind == "unit" and unit_name(values[0]).split("@")[0].split(".")[0].startswith(_SELF):
            return f"{entry.id} never acts on remediator itself ({scope.param} {values[0]!r})"
        found = inventory.allow_list(host, scope.lists)
        if found is None:
            return (f"{host} declares no allow-list for {entry.id} ({' or '.join(scope.lists)} in the inventory): "
                    f"nothing is in scope there")
        name, allowed = found
        outside = [v for v in values if not _listed(scope.kind, v, allowed)]
        if outside or not values:
            shown = ", ".join(map(repr, outside)) or "nothing"
            return f"{scope.param} {shown} is not on {host}'s {name} ({', '.join(allowed) or 'empty'})"
    return None


def allowed_roots(entry: CatalogEntry, host: str, inventory: Inventory) -> list[str] | None:
    """The directories the entry may touch on `host` (its `path` scopes), or None if it has no such scope."""
    roots: list[str] | None = None
    for scope in entry.meta.scope:
        if scope.kind == "path":
            found = inventory.allow_list(host, scope.lists)
            roots = (roots or []) + (found[1] if found else [])
    return roots


def under(path: str, roots: list[str]) -> bool:
    """`path` is one of `roots` or below one, compared as text: no `.` or `..` components, no odd characters."""
    if not _PLAIN_PATH.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
        return False
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots if _PLAIN_PATH.fullmatch(r))


def _listed(kind: str, value: str, allowed: list[str]) -> bool:
    if kind == "path":
        return under(value, allowed)
    if kind in ("pattern", "value"):
        return value in allowed        # listed as written: `*` is not "any pattern", a backend is its exact address
    return any(fnmatch.fnmatchcase(unit_name(value), unit_name(pattern)) for pattern in allowed)
