"""Nothing a test run started may outlive it (tests/run.sh, at the end): no lab container or Molecule instance, no
ansible-playbook of a run (or a fork of one: ansible-runner's AWX_ISOLATED_DATA_DIR in its environment), no
`remediator serve`, no model server. Prints what is left, one a line; exit code 1 when anything is.

    python -m tests.leftovers
"""
import os
import subprocess
import sys
from pathlib import Path

CONTAINERS = ("remediator-lab", "remediator-molecule")
COMMANDS = (b"remediator\0serve", b"lab/local_model.py")


def containers() -> list[str]:
    out = subprocess.run(["podman", "ps", "--all", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
    return [f"container {n}" for n in out.split() if n.startswith(CONTAINERS)]


def processes() -> list[str]:
    mine = {os.getpid(), os.getppid()}
    left = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid in mine:
            continue
        try:
            environ, cmdline = (Path(f"/proc/{pid}/{f}").read_bytes() for f in ("environ", "cmdline"))
        except OSError:
            continue
        ssh_master = cmdline.startswith(b"ssh: ") and b"[mux]" in cmdline   # ends by itself when idle (ControlPersist)
        if (b"AWX_ISOLATED_DATA_DIR=" in environ and not ssh_master) or any(c in cmdline for c in COMMANDS):
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            left.append(f"process {pid}: {shown}")
    return left


if __name__ == "__main__":
    found = containers() + processes()
    print("\n".join(found))
    sys.exit(1 if found else 0)
