#!/usr/bin/python
"""End what a stopped remediator run left on this host: its marked processes and the systemd jobs they queued."""
from __future__ import annotations

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: remediator_stop_run
short_description: End every process of a stopped remediator run on this host, and the systemd jobs it queued
description:
  - Every catalog play sets REMEDIATOR_RUN=<run> in the environment of its tasks, which each process they start
    inherits. This kills (SIGKILL) every process whose environment carries the run's mark, looking again until
    none is left, then cancels the systemd jobs of the units its systemctl calls named (a killed
    `systemctl restart` leaves its job behind) and stops such a unit if it is still starting or stopping (a
    cancelled job does not end a start already under way).
  - remediator runs it when a run was stopped (its timeout, a cancel on shutdown), before the host is released.
options:
  run: {description: The run's identifier (the REMEDIATOR_RUN value)., type: str, required: true}
"""


def _marked(mark: bytes) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                found[int(name)] = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:   # gone meanwhile, or a kernel thread
            continue
    return found


def _units(argvs: list[list[str]]) -> set[str]:
    """The units the run's systemctl calls named ('systemctl restart webapp.service' -> webapp.service)."""
    units: set[str] = set()
    for argv in argvs:
        if argv and os.path.basename(argv[0]) == "systemctl":
            words = [a for a in argv[1:] if not a.startswith("-")]
            units.update(u if "." in u else f"{u}.service" for u in words[1:])
    return units


def main() -> None:
    module = AnsibleModule(argument_spec={"run": {"type": "str", "required": True}})
    run = module.params["run"]
    if not run:
        module.fail_json(msg="run must name the run to stop")
    mark = f"REMEDIATOR_RUN={run}".encode()
    ended: dict[int, list[str]] = {}
    for _ in range(10):   # a process may start another while we look: look again until none is left
        found = _marked(mark)
        if not found:
            break
        for pid, argv in found.items():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            ended[pid] = argv
        time.sleep(0.2)
    cancelled, stopped = [], []
    units = sorted(_units(list(ended.values())))
    if units:
        _, out, _ = module.run_command(["systemctl", "list-jobs", "--no-legend"])
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 3 and cols[1] in units:
                rc, _, _ = module.run_command(["systemctl", "cancel", cols[0]])
                if rc == 0:
                    cancelled.append(f"{cols[2]} {cols[1]}")
    for unit in units:
        # A cancelled job does not stop a start already under way (an ExecStartPre still running): the unit would
        # come up later, unasked, with the host released. Stopped, it stays as the run's restart had left it.
        _, state, _ = module.run_command(["systemctl", "show", "--property=ActiveState", "--value", unit])
        if state.strip() in ("activating", "deactivating"):
            rc, _, err = module.run_command(["timeout", "60", "systemctl", "stop", unit])
            stopped.append(unit if rc == 0 else f"{unit} (stop failed: {err.strip()[:200]})")
    left = _marked(mark)
    result = {"changed": bool(ended or cancelled or stopped), "ended": [" ".join(a)[:200] for a in ended.values()],
              "cancelled": cancelled, "stopped": stopped, "left": [" ".join(a)[:200] for a in left.values()]}
    if left:
        module.fail_json(msg=f"{len(left)} processes of run {run} are still alive", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
