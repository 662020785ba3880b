"""Which inventory host an alert is about. A host not in the inventory is escalated, never guessed."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["Inventory", "load_inventory", "host_from_labels", "strip_port"]

_PORT = re.compile(r"^(?P<host>\[[^\]]+\]|[^:]+):\d+$")


@dataclass(frozen=True)
class Inventory:
    """Host names, their groups and the vars policy may look at, as Ansible itself reads them."""

    hosts: dict[str, list[str]]                      # host -> groups
    host_vars: dict[str, dict] = field(default_factory=dict)

    def environment(self, host: str) -> str:
        return str(self.host_vars.get(host, {}).get("environment", ""))

    def allow_list(self, host: str, names: list[str]) -> tuple[str, list[str]] | None:
        """The first of the `remediator_*` allow-lists `names` that the host (or a group of it) declares."""
        for name in names:
            value = self.host_vars.get(host, {}).get(name)
            if value is not None:
                return name, [str(v) for v in (value if isinstance(value, list) else [value])]
        return None


def load_inventory(path: Path) -> Inventory:
    """Parse any inventory Ansible can (YAML, INI, a directory) with Ansible's own parser."""
    if not path.exists():
        raise ConfigError(f"{path}: inventory not found")
    from ansible.inventory.helpers import get_group_vars
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.utils.vars import combine_vars
    manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
    hosts, host_vars = {}, {}
    for host in manager.get_hosts():
        hosts[host.name] = sorted(g.name for g in host.get_groups() if g.name not in ("all", "ungrouped"))
        # group vars (all, then deeper groups) under host vars, combined as Ansible itself does
        merged = combine_vars(get_group_vars(host.get_groups()), host.get_vars())
        host_vars[host.name] = {k: v for k, v in merged.items() if k == "environment" or k.startswith("remediator_")}
    if not hosts:
        raise ConfigError(f"{path}: the inventory has no hosts")
    return Inventory(hosts=hosts, host_vars=host_vars)


def strip_port(value: str) -> str:
    """'app-server-01:9100' -> 'app-server-01', '[::1]:80' -> '::1'; anything else as it is."""
    m = _PORT.match(value)
    return m.group("host").strip("[]") if m else value


def host_from_labels(labels: dict[str, str], inventory: Inventory, label_order: list[str]) -> tuple[str | None, str]:
    """(host, how it was found) or (None, why not), trying the labels in order; ports are stripped."""
    tried = []
    for label in label_order:
        value = labels.get(label)
        if not value:
            continue
        name = strip_port(value)
        if name in inventory.hosts:
            return name, f"label {label}={value!r}"
        tried.append(f"{label}={value!r}")
    if tried:
        return None, f"no inventory host matches {', '.join(tried)}"
    return None, f"the alert has none of the labels {', '.join(label_order)}"
