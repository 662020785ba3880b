"""The lab fleet: one Podman container per host of inventory/lab.yml, from the lab image.

Containers are named `remediator-lab-<host>`, run systemd as PID 1, and publish two ports on 127.0.0.1
only: the webapp on <lab_port> and sshd on the host's `ansible_port`. remediator reaches them over SSH,
as it reaches a real fleet: a client key and one host key per host, made here once (SSH_DIR), the host
keys pinned in the known_hosts file the lab inventory names, host-key checking on.

Several labs can run side by side (the tests run one per pytest-xdist worker): `instance_inventory(k)` writes a
copy of the lab inventory whose containers are `remediator-lab<k>-<host>`, whose ports are shifted by 100*k and
whose SSH control sockets are its own; every function here reads the instance from the inventory it is given.
"""
from __future__ import annotations

import fcntl
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

__all__ = ["LabHost", "lab_hosts", "instance_inventory", "up", "down", "status", "IMAGE", "SSH_DIR", "INVENTORY"]

IMAGE = "localhost/remediator-lab:latest"
#: the lab's SSH material; inventory/lab.yml names these files ({{ inventory_dir }}/../var/lab-ssh/...)
SSH_DIR = PROJECT_ROOT / "var" / "lab-ssh"
#: the lab inventory of the checkout: instance 0
INVENTORY = PROJECT_ROOT / "inventory" / "lab.yml"
#: how far apart two instances' published ports are
PORT_STRIDE = 100


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
    instance = int(((doc.get("all") or {}).get("vars") or {}).get("lab_instance", 0))
    prefix = "remediator-lab-" if instance == 0 else f"remediator-lab{instance}-"

    def walk(group: dict) -> None:
        for name, hv in (group.get("hosts") or {}).items():
            hv = hv or {}
            if "lab_port" in hv:
                if "ansible_port" not in hv:
                    raise ConfigError(f"{inventory}: lab host {name} has no ansible_port (its sshd on 127.0.0.1)")
                hosts.append(LabHost(name=name, container=prefix + name, port=int(hv["lab_port"]),
                                     ssh_port=int(hv["ansible_port"])))
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(doc.get("all", {}))
    if not hosts:
        raise ConfigError(f"{inventory}: no host has lab_port; this is not a lab inventory")
    return hosts


def instance_inventory(instance: int, base: Path = INVENTORY) -> Path:
    """The lab inventory of instance `instance` (0: `base` itself), written under var/lab-instances/ from `base`:
    its containers, ports and SSH control sockets its own, the same host keys (pinned under the same names)."""
    if instance == 0:
        return base
    doc = yaml.safe_load(base.read_text().replace("{{ inventory_dir }}/..", str(PROJECT_ROOT)))
    shift = PORT_STRIDE * instance

    def walk(group: dict) -> None:
        for hv in (group.get("hosts") or {}).values():
            for key in ("ansible_port", "lab_port"):
                if hv and key in hv:
                    hv[key] = int(hv[key]) + shift
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(doc["all"])
    doc["all"]["vars"]["lab_instance"] = instance
    doc["all"]["vars"]["ansible_control_path"] = f"%(directory)s/remediator-lab{instance}-{{{{ inventory_hostname }}}}"
    path = PROJECT_ROOT / "var" / "lab-instances" / str(instance) / base.name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(f"# lab instance {instance}, written from {base} by remediator/engine/lab/fleet.py\n"
                   + yaml.safe_dump(doc, sort_keys=False, width=1000))
    tmp.replace(path)
    return path


#: How long one podman command of the lab may wait: podman queues for its locks, and beside an image build (its
#: layer commits) a plain `podman inspect` waited past 120 s in CI. A bound for a hang, not a wait expected.
PODMAN_TIMEOUT_S = 600


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=PODMAN_TIMEOUT_S)
    except FileNotFoundError:
        raise RemediatorError("podman is not installed: run lab/setup.sh") from None
    if check and proc.returncode != 0:
        raise RemediatorError(f"podman {' '.join(args[:2])} failed: {proc.stderr.strip()[-500:]}")
    return proc


def _remove(container: str, attempts: int = 10) -> None:
    """Remove a container, and make sure it is gone: a `podman rm --force` that races podman's own cleanup of the
    killed container can fail and leave its name taken (seen on CI: the next `podman run` of the name failed)."""
    for _ in range(attempts):
        removed = _podman("rm", "--force", "--time", "0", container, check=False)
        if _podman("container", "exists", container, check=False).returncode == 1:
            return
        time.sleep(1)
    raise RemediatorError(f"podman could not remove the lab container {container}: {removed.stderr.strip()[-300:]}; "
                          f"try: podman rm --force {container}")


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
    # Labs side by side share these files: one writer at a time, and known_hosts replaced whole, never half written
    # while another lab's run reads it.
    with open(SSH_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _keygen(SSH_DIR / "id_ed25519", "remediator-lab-client")
        lines = []
        for h in sorted({h.name for h in hosts}):
            _keygen(SSH_DIR / "hosts" / h, h)
            algo, key = (SSH_DIR / "hosts" / f"{h}.pub").read_text().split()[:2]
            lines.append(f"{h} {algo} {key}\n")
        known = SSH_DIR / "known_hosts"
        if not known.is_file() or known.read_text() != "".join(lines):
            (SSH_DIR / "known_hosts.tmp").write_text("".join(lines))
            (SSH_DIR / "known_hosts.tmp").replace(known)


def close_connections(hosts: list[LabHost]) -> list[int]:
    """End the SSH control masters (ControlPersist) of connections to these lab hosts, so none outlives the
    container it reached; returns their pids. A master names itself by its socket, which the lab inventory
    names after the container (ansible_control_path)."""
    titles = {f"/{h.container} [mux]".encode() for h in hosts}
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


def up(inventory: Path, hosts: list[str] | None = None, timeout_s: float = 60, *, traffic: bool = True) -> list[LabHost]:
    """Start (fresh) containers for the lab hosts and wait until systemd has booted in each. `traffic` False masks
    the hosts' clients (lab-client.service, 20 requests a second): a host nobody reads request metrics from then
    burns no CPU on them (the tests' chaos lanes, on two cores)."""
    if _podman("image", "exists", IMAGE, check=False).returncode != 0:
        raise RemediatorError(f"the lab image {IMAGE} is not built: run lab/image/build.sh")
    every = lab_hosts(inventory)
    ssh_keys(every)
    chosen = [h for h in every if hosts is None or h.name in hosts]
    close_connections(chosen)
    for h in chosen:
        _remove(h.container)
        _podman("run", "--detach", "--name", h.container, "--hostname", h.name, "--systemd=always",
                "--publish", f"127.0.0.1:{h.port}:8080", "--publish", f"127.0.0.1:{h.ssh_port}:22",
                "--volume", f"{SSH_DIR / 'hosts' / h.name}:/etc/ssh/ssh_host_ed25519_key:ro",
                "--volume", f"{SSH_DIR / 'id_ed25519.pub'}:/root/.ssh/authorized_keys:ro",
                "--label", "remediator-lab=1", IMAGE, "/sbin/init",
                # in a container, systemd reads its kernel command line from its own arguments
                *([] if traffic else ["systemd.mask=lab-client.service"]))
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


def down(inventory: Path, hosts: list[str] | None = None) -> list[str]:
    """Remove the containers of these hosts (default: every one) of this lab (this instance's, no other's);
    returns the names removed."""
    every = [h for h in lab_hosts(inventory) if hosts is None or h.name in hosts]
    names = [h.container for h in every]
    existing = json.loads(_podman("ps", "--all", "--format", "json", check=False).stdout or "[]")
    present = {n for c in existing for n in c.get("Names", [])}
    gone = [n for n in names if n in present]
    if gone:
        _podman("rm", "--force", "--time", "0", *gone)
    close_connections(every)
    return gone
