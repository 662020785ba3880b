"""The lab fleet: one Podman container per host of inventory/lab.yml, from the lab image.

Containers are named by the host's `ansible_host`, run systemd as PID 1, and publish the webapp
on 127.0.0.1:<lab_port> only.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from engine.errors import ConfigError, RemediatorError

__all__ = ["LabHost", "lab_hosts", "up", "down", "status", "IMAGE"]

IMAGE = "localhost/remediator-lab:latest"


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    port: int


def lab_hosts(inventory: Path) -> list[LabHost]:
    """The hosts of a lab inventory (a YAML inventory whose hosts carry lab_port)."""
    try:
        doc = yaml.safe_load(inventory.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{inventory}: cannot read the lab inventory: {exc}") from None
    hosts: list[LabHost] = []

    def walk(group: dict) -> None:
        for name, hv in (group.get("hosts") or {}).items():
            hv = hv or {}
            if "lab_port" in hv:
                hosts.append(LabHost(name=name, container=hv.get("ansible_host", name), port=int(hv["lab_port"])))
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(doc.get("all", {}))
    if not hosts:
        raise ConfigError(f"{inventory}: no host has lab_port; this is not a lab inventory")
    return hosts


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise RemediatorError("podman is not installed: run lab/setup.sh") from None
    if check and proc.returncode != 0:
        raise RemediatorError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()[-500:]}")
    return proc


def status(inventory: Path) -> dict[str, str]:
    """Container state per lab host ('missing' when there is none)."""
    out = {}
    for h in lab_hosts(inventory):
        proc = _podman("inspect", "--format", "{{.State.Status}}", h.container, check=False)
        out[h.name] = proc.stdout.strip() if proc.returncode == 0 else "missing"
    return out


def up(inventory: Path, hosts: list[str] | None = None, timeout_s: float = 60) -> list[LabHost]:
    """Start (fresh) containers for the lab hosts and wait until systemd has booted in each."""
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        raise RemediatorError(f"the lab image {IMAGE} is not built: run lab/image/build.sh")
    chosen = [h for h in lab_hosts(inventory) if hosts is None or h.name in hosts]
    for h in chosen:
        _podman("rm", "--force", "--time", "0", h.container, check=False)
        _podman("run", "--detach", "--name", h.container, "--hostname", h.name, "--systemd=always",
                "--publish", f"127.0.0.1:{h.port}:8080", "--label", "remediator-lab=1", IMAGE, "/sbin/init")
    deadline = time.monotonic() + timeout_s
    for h in chosen:
        while True:
            proc = _podman("exec", h.container, "systemctl", "is-system-running", check=False)
            if proc.stdout.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RemediatorError(f"lab host {h.name} did not finish booting in {timeout_s:.0f}s")
            time.sleep(0.3)
    return chosen


def down(inventory: Path) -> list[str]:
    """Remove every lab container; returns the names removed."""
    names = [h.container for h in lab_hosts(inventory)]
    existing = json.loads(_podman("ps", "--all", "--format", "json", check=False).stdout or "[]")
    present = {n for c in existing for n in c.get("Names", [])}
    gone = [n for n in names if n in present]
    if gone:
        _podman("rm", "--force", "--time", "0", *gone)
    return gone
