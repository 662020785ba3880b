"""The lab fleet: one Podman container per host of inventory/lab.yml, from the lab image.

Containers are named `remediator-lab-<host>`, run systemd as PID 1, and publish two ports on 127.0.0.1
only: the webapp on <lab_port> and sshd on the host's `ansible_port`. remediator reaches them over SSH,
as it reaches a real fleet: a client key and one host key per host, made here once (SSH_DIR), the host
keys pinned in the known_hosts file the lab inventory names, host-key checking on.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from remediator.engine import PROJECT_ROOT
from remediator.engine.errors import ConfigError, RemediatorError

__all__ = ["LabHost", "lab_hosts", "up", "down", "status", "IMAGE", "SSH_DIR"]

IMAGE = "localhost/remediator-lab:latest"
#: the lab's SSH material; inventory/lab.yml names these files ({{ inventory_dir }}/../var/lab-ssh/...)
SSH_DIR = PROJECT_ROOT / "var" / "lab-ssh"


@dataclass(frozen=True)
class LabHost:
    name: str
    container: str
    port: int          # the webapp, 127.0.0.1:<port>
    ssh_port: int      # sshd, 127.0.0.1:<ssh_port>


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
                if "ansible_port" not in hv:
                    raise ConfigError(f"{inventory}: lab host {name} has no ansible_port (its sshd on 127.0.0.1)")
                hosts.append(LabHost(name=name, container=f"remediator-lab-{name}", port=int(hv["lab_port"]),
                                     ssh_port=int(hv["ansible_port"])))
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


def _keygen(path: Path, comment: str) -> None:
    if not path.is_file():
        try:
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                           check=True, capture_output=True, timeout=30)
        except FileNotFoundError:
            raise RemediatorError("ssh-keygen is not installed: run lab/setup.sh (openssh-client)") from None


def ssh_keys(hosts: list[LabHost]) -> None:
    """The client key, one host key per host (kept across `lab up`), and known_hosts pinning each host's key
    under its inventory name (the lab inventory's HostKeyAlias)."""
    (SSH_DIR / "hosts").mkdir(parents=True, exist_ok=True, mode=0o700)
    SSH_DIR.chmod(0o700)
    _keygen(SSH_DIR / "id_ed25519", "remediator-lab-client")
    lines = []
    for h in sorted(hosts, key=lambda h: h.name):
        _keygen(SSH_DIR / "hosts" / h.name, h.name)
        algo, key = (SSH_DIR / "hosts" / f"{h.name}.pub").read_text().split()[:2]
        lines.append(f"{h.name} {algo} {key}\n")
    (SSH_DIR / "known_hosts").write_text("".join(lines))


def close_connections(hosts: list[LabHost]) -> list[int]:
    """End the SSH control masters (ControlPersist) of connections to these lab hosts, so none outlives the
    container it reached; returns their pids. A master names itself by its socket, which the lab inventory
    names after the host (ansible_control_path)."""
    titles = {f"/remediator-lab-{h.name} [mux]".encode() for h in hosts}
    ended = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
        except OSError:
            continue
        if title.startswith(b"ssh: ") and any(title.endswith(t) for t in titles):
            try:
                os.kill(int(pid), signal.SIGTERM)
                ended.append(int(pid))
            except ProcessLookupError:
                pass
    return ended


def up(inventory: Path, hosts: list[str] | None = None, timeout_s: float = 60) -> list[LabHost]:
    """Start (fresh) containers for the lab hosts and wait until systemd has booted in each."""
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        raise RemediatorError(f"the lab image {IMAGE} is not built: run lab/image/build.sh")
    every = lab_hosts(inventory)
    ssh_keys(every)
    chosen = [h for h in every if hosts is None or h.name in hosts]
    close_connections(chosen)
    for h in chosen:
        _podman("rm", "--force", "--time", "0", h.container, check=False)
        _podman("run", "--detach", "--name", h.container, "--hostname", h.name, "--systemd=always",
                "--publish", f"127.0.0.1:{h.port}:8080", "--publish", f"127.0.0.1:{h.ssh_port}:22",
                "--volume", f"{SSH_DIR / 'hosts' / h.name}:/etc/ssh/ssh_host_ed25519_key:ro",
                "--volume", f"{SSH_DIR / 'id_ed25519.pub'}:/root/.ssh/authorized_keys:ro",
                "--label", "remediator-lab=1", IMAGE, "/sbin/init")
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
    every = lab_hosts(inventory)
    names = [h.container for h in every]
    existing = json.loads(_podman("ps", "--all", "--format", "json", check=False).stdout or "[]")
    present = {n for c in existing for n in c.get("Names", [])}
    gone = [n for n in names if n in present]
    if gone:
        _podman("rm", "--force", "--time", "0", *gone)
    close_connections(every)
    return gone
