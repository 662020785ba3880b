"""The inventory: host names, their groups and the `remediator_*` vars policy reads, as Ansible itself parses them.

Foundation data: intake maps alert labels to its hosts (intake/targets.py), decide/ reads its allow-lists, the
pipeline its groups. ansible-playbook reads the file at every run, so remediator must not judge by an older view:
`refresh()` reads it again when its content changed (serve does every few seconds, and before each dry run and
real run), in place, so every part holding it sees the new one; `sha` goes into the approval digest."""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from remediator.engine.errors import ConfigError

__all__ = ["Inventory", "load_inventory", "strip_port"]

log = logging.getLogger(__name__)
_PORT = re.compile(r"^(?P<host>\[[^\]]+\]|[^:]+):\d+$")


@dataclass(frozen=True)
class Inventory:
    """Host names, their groups and the vars policy may look at, as Ansible itself reads them."""

    hosts: dict[str, list[str]]                      # host -> groups
    host_vars: dict[str, dict] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)   # a host's name and ansible_host, case-folded -> host
    source: Path | None = None                       # the file or directory it was read from
    sha: str = ""                                    # of that content, as read

    def refresh(self) -> bool:
        """Read the source again if its content changed since (in place); True when it did. An edit Ansible cannot
        parse keeps the view it replaces, and says so in the log (ansible-playbook will refuse it too)."""
        if self.source is None:
            return False
        with _REFRESH:
            sha = content_sha(self.source)
            if sha == self.sha:
                return False
            try:
                fresh = load_inventory(self.source)
            except ConfigError as exc:
                log.error("the inventory changed and cannot be read (%s); remediator keeps judging by the one before",
                          exc.message)
                return False
            for name in ("hosts", "host_vars", "aliases", "sha"):   # frozen for everyone else: only this swaps
                object.__setattr__(self, name, getattr(fresh, name))
            log.info("the inventory %s changed: read again (%d hosts)", self.source, len(self.hosts))
            return True

    def resolve(self, value: str) -> str | None:
        """The inventory host a label value names: by name or ansible_host, any case, port and trailing dot dropped."""
        key = strip_port(value).strip().rstrip(".").casefold()
        return self.aliases.get(key)

    def groups_of(self, host: str | None) -> dict[str, list[str]]:
        """The host's groups, each with its hosts."""
        if host is None:
            return {}
        return {g: [h for h, gs in self.hosts.items() if g in gs] for g in self.hosts.get(host, [])}

    def environment(self, host: str) -> str:
        return str(self.host_vars.get(host, {}).get("environment", ""))

    def depends_on(self, host: str, service: str) -> list[str]:
        """The units `service` needs on `host`, as the inventory declares them (`remediator_depends_on`)."""
        declared = self.host_vars.get(host, {}).get("remediator_depends_on") or {}
        needs = declared.get(service, []) if isinstance(declared, dict) else []
        return [str(u) for u in (needs if isinstance(needs, list) else [needs])]

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
    sha = content_sha(path)   # before parsing: a change meanwhile is read again at the next refresh()
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
    return Inventory(hosts=hosts, host_vars=host_vars, aliases=aliases, source=path, sha=sha)


_REFRESH = threading.Lock()


def content_sha(path: Path) -> str:
    """sha256 of an inventory's content: the file, or every file below the directory with its relative name."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _alias(value: str) -> str:
    return value.rstrip(".").casefold()


def strip_port(value: str) -> str:
    """'app-server-01:9100' -> 'app-server-01', '[::1]:80' -> '::1'; anything else as it is."""
    m = _PORT.match(value)
    return m.group("host").strip("[]") if m else value
