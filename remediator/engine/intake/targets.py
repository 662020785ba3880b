"""Which inventory host an alert is about. A host not in the inventory is escalated, never guessed."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from remediator.engine.errors import ConfigError

__all__ = ["Inventory", "load_inventory", "host_from_labels", "strip_port"]

_PORT = re.compile(r"^(?P<host>\[[^\]]+\]|[^:]+):\d+$")


@dataclass(frozen=True)
class Inventory:
    """Host names, their groups and the vars policy may look at, as Ansible itself reads them."""

    hosts: dict[str, list[str]]                      # host -> groups
    host_vars: dict[str, dict] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)   # a host's name and ansible_host, case-folded -> host

    def resolve(self, value: str) -> str | None:
        """The inventory host a label value names: by name or ansible_host, any case, port and trailing dot dropped."""
        key = strip_port(value).strip().rstrip(".").casefold()
        return self.aliases.get(key)

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
    hosts: dict[str, list[str]] = {}
    host_vars: dict[str, dict] = {}
    addresses: dict[str, set[str]] = {}
    for host in manager.get_hosts():
        hosts[host.name] = sorted(g.name for g in host.get_groups() if g.name not in ("all", "ungrouped"))
        # group vars (all, then deeper groups) under host vars, combined as Ansible itself does
        merged = combine_vars(get_group_vars(host.get_groups()), host.get_vars())
        host_vars[host.name] = {k: v for k, v in merged.items() if k == "environment" or k.startswith("remediator_")}
        addresses.setdefault(_alias(str(merged.get("ansible_host", host.name))), set()).add(host.name)
    if not hosts:
        raise ConfigError(f"{path}: the inventory has no hosts")
    # An address several hosts share (hosts behind one IP, on their own ports) names none of them; a host's own
    # name always names that host.
    aliases = {address: next(iter(named)) for address, named in addresses.items() if len(named) == 1}
    aliases.update({_alias(name): name for name in hosts})
    return Inventory(hosts=hosts, host_vars=host_vars, aliases=aliases)


def _alias(value: str) -> str:
    return value.rstrip(".").casefold()


def strip_port(value: str) -> str:
    """'app-server-01:9100' -> 'app-server-01', '[::1]:80' -> '::1'; anything else as it is."""
    m = _PORT.match(value)
    return m.group("host").strip("[]") if m else value


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
