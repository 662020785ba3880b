"""This test process's lab: one lab instance per pytest-xdist worker (remediator/engine/lab/fleet.py), so the lab
lanes run side by side without sharing a container, a port or an SSH socket.

Modules take the `lab` fixture (tests/conftest.py) and ask it for the hosts they use: `lab.use(hosts)` reuses a
host a module before left running and clean, and boots it fresh otherwise; a module that breaks hosts on purpose
(the chaos tests) asks `fresh=True` and removes them when it is done (`used()`). The rest are removed at the
session's end.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from remediator.engine.lab import fleet

#: gw0 -> 0, gw1 -> 1, ...; 0 (the checkout's own lab/inventory) outside xdist
INSTANCE = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
#: this instance's lab inventory: hand it to serve (REMEDIATOR_INVENTORY) and to every executor of a lab test
INVENTORY: Path = fleet.instance_inventory(INSTANCE)
HOSTS = {h.name: h for h in fleet.lab_hosts(INVENTORY)}


def container(host: str) -> str:
    """The Podman container of a lab host in this instance."""
    return HOSTS[host].container


def on_host(host: str, *argv: str) -> subprocess.CompletedProcess:
    """Run a command on a lab host directly (podman exec), independent of remediator."""
    return subprocess.run(["podman", "exec", container(host), *argv], capture_output=True, text=True)


class Lab:
    """The lab hosts of this instance, booted on demand and reused while they are clean."""

    inventory = INVENTORY
    instance = INSTANCE
    hosts = HOSTS

    def __init__(self) -> None:
        self._clean: set[str] = set()

    def use(self, hosts: list[str] | None = None, *, fresh: bool = False) -> list[str]:
        """Make sure these hosts (default: all) run; boot those that do not, were used by a breaking module, or
        all of them when `fresh`. Returns the names. Booted without client traffic: no test module reads request
        metrics from them (the drills do, through `remediator lab up`, which starts the clients)."""
        names = list(hosts or HOSTS)
        states = fleet.status(INVENTORY)
        stale = [h for h in names if fresh or h not in self._clean or states.get(h) != "running"]
        if stale:
            fleet.up(INVENTORY, hosts=stale, traffic=False)
        self._clean |= set(names)
        return names

    def used(self, hosts: list[str] | None = None) -> None:
        """These hosts were broken on purpose: removed now (an idle lab host still serves its client's traffic), and
        the next module that uses them gets them fresh."""
        fleet.down(INVENTORY, hosts)
        self._clean -= set(hosts or HOSTS)

    def down(self) -> None:
        fleet.down(INVENTORY)
        self._clean.clear()
