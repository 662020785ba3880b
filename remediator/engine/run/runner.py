"""Runs catalog playbooks through ansible-runner: one private data dir per run, check or apply.

Every value from an alert or a planner goes in as unsafe extra vars (CatalogEntry.extravars), env
files are not written (suppress_env_files), and a run has a timeout and can be cancelled. A killed
ansible-playbook does not stop what it already started on a host, so every catalog play marks its
tasks' processes with REMEDIATOR_RUN=<ident>, and a stopped run is followed, before the host is given
back, by playbooks/library/remediator_stop_run.py on its hosts, which ends them and the systemd jobs
they queued. And an engine that dies takes its ansible processes with it (run/tether.py).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import ansible_runner
from ansible_runner.config.runner import RunnerConfig

from remediator.engine import SHIPPED
from remediator.engine.catalog.loader import CatalogEntry
from remediator.engine.model.records import RunResult, RunStatus
from remediator.engine.run.preview import build_preview, reports_from_events
from remediator.engine.run.tether import PARENT_ENV, WARM_ENV, tether_dir
from remediator.engine.run.warm import WarmAnsible

__all__ = ["Executor", "AnsibleExecutor"]

LIBRARY = SHIPPED / "playbooks" / "library"
_IDENT = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


#: read-only diagnostics (entry, validated parameters) to run right after a real run, in the same invocation
Then = Sequence[tuple[CatalogEntry, dict[str, Any]]]


class Executor(Protocol):
    def run(self, entry: CatalogEntry, params: dict[str, Any], hosts: list[str], *, check: bool, ident: str,
            timeout_s: int, cancel: threading.Event | None = None, then: Then = ()) -> RunResult: ...

    def stop_on_hosts(self, hosts: list[str], ident: str) -> str: ...

    def close(self) -> None: ...


class AnsibleExecutor:
    """The real executor: ansible_runner.run() against the configured inventory."""

    def __init__(self, runs_dir: Path, inventory: Path, forks: int = 5, warm: bool = True, warm_idle_s: float = 600):
        self.runs_dir = runs_dir
        self.inventory = inventory
        self.forks = forks
        self.tether = tether_dir(runs_dir)
        self.warm: WarmAnsible | None = None
        if warm:   # one Ansible started once for all runs (run/warm.py); its settings are those of every run
            base = RunnerConfig(private_data_dir=str(runs_dir / ".warm"), project_dir=str(SHIPPED / "playbooks"),
                                playbook="service_status.yml", inventory=str(inventory), suppress_env_files=True,
                                envvars=self._env(SHIPPED / "playbooks" / "roles"), ident="baseline", quiet=True)
            base.prepare()
            # replaced when these change: the hosts, their pinned keys (kept connections were checked when made),
            # the catalog's modules
            watch = [inventory, LIBRARY, *(inventory.parent / d for d in ("ssh", "group_vars", "host_vars"))]
            self.warm = WarmAnsible(runs_dir / ".warm", base.env, Path(base.cwd or "."), watch, idle_s=warm_idle_s)
            weakref.finalize(self, self.warm.close)   # an executor dropped without close() leaves no server behind

    def _env(self, roles: Path) -> dict[str, str]:
        return {**run_env(self.tether), "ANSIBLE_ROLES_PATH": str(roles)}

    def _warm_env(self) -> dict[str, str]:
        sock = self.warm.socket() if self.warm is not None else None
        return {WARM_ENV: str(sock)} if sock is not None else {}

    def close(self) -> None:
        """Stop the warm Ansible, if this executor started one."""
        if self.warm is not None:
            self.warm.close()

    def run(self, entry: CatalogEntry, params: dict[str, Any], hosts: list[str], *, check: bool, ident: str,
            timeout_s: int, cancel: threading.Event | None = None, then: Then = ()) -> RunResult:
        """One catalog run; with `then` (a real run only), read-only diagnostics run right after it in the same
        ansible-playbook (one process start and one connection setup fewer each), their results in `.then`."""
        if then and (check or any(not e.meta.read_only for e, _ in then)):
            raise ValueError("only read-only diagnostics may follow a run, and only a real one")
        private = self.runs_dir / ident
        if private.exists():
            shutil.rmtree(private)
        private.mkdir(parents=True, mode=0o700)
        events: list[dict[str, Any]] = []
        project, playbook = entry.playbook.parent, entry.playbook.name
        extravars = {**entry.extravars(params, hosts), "remediator_run": ident}
        if then:   # the entries' own playbooks, one after the other; their variables are prefixed by entry
            project, playbook = private / "project", "run.yml"
            project.mkdir(mode=0o700)
            (project / playbook).write_text(json.dumps(
                [{"import_playbook": str(e.playbook)} for e in (entry, *(e for e, _ in then))]))
            for e, p in then:
                extravars.update(e.extravars(p, hosts))

        def keep(event: dict[str, Any]) -> bool:
            events.append(event)
            return True   # and let ansible-runner write the event's artifact too
        started = time.monotonic()
        cmdline = "--check --diff" if check else "--diff"
        try:
            r = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(project),
                playbook=playbook,
                inventory=str(self.inventory),
                limit=",".join(hosts),
                extravars=extravars,
                cmdline=cmdline,
                forks=self.forks,
                ident="run",
                quiet=True,
                suppress_env_files=True,
                timeout=timeout_s,
                cancel_callback=(lambda: cancel.is_set()) if cancel else None,
                event_handler=keep,
                envvars={**self._env(entry.playbook.parent / "roles"), **self._warm_env()},
            )
            status = {"successful": RunStatus.SUCCESSFUL, "failed": RunStatus.FAILED, "timeout": RunStatus.TIMEOUT,
                      "canceled": RunStatus.CANCELED}.get(r.status, RunStatus.ERROR)
            rc = r.rc
        except Exception as exc:   # ansible-runner itself broke: an outcome of the run, not a crash of ours
            status, rc = RunStatus.ERROR, None
            events.append({"event": "error", "event_data": {"msg": str(exc)}})
        duration = round(time.monotonic() - started, 3)
        stopped = status in (RunStatus.TIMEOUT, RunStatus.CANCELED, RunStatus.ERROR)
        on_hosts = self.stop_on_hosts(hosts, ident) if stopped else ""
        followed: list[RunResult] = []
        reads_began = False
        if then:
            per_play = _split_by_play(events, [e.plays for e in (entry, *(e for e, _ in then))])
            events = per_play[0]
            followed = [_followup(f"{ident}-then{i}-{e.id}", e, per_play[i + 1], hosts, str(private), status)
                        for i, (e, _) in enumerate(then)]
            reads_began = any(e.get("event") == "playbook_on_play_start" for later in per_play[1:] for e in later)
        preview = build_preview(entry.id, events, check, hosts)
        if reads_began:   # its own play ended before the reads began: judged by its own events, not by theirs
            status, rc, stopped = (RunStatus.SUCCESSFUL, 0, False) if preview.ok else (RunStatus.FAILED, 2, False)
        if stopped:
            # A stopped run's events end mid-play: "changed nothing" would be a guess. Say what is known.
            task = next((e.get("event_data", {}).get("task") for e in reversed(events)
                         if e.get("event") == "playbook_on_task_start"), None)
            preview = preview.model_copy(update={"ok": False, "summary": (
                f"{entry.id}: the run was stopped ({status.value}) after {duration:.0f} s"
                + (f", in task {task!r}" if task else "") + ("" if check else "; it may have done part of its work")
                + "." + (f" {events[-1]['event_data'].get('msg', '')}" if status == RunStatus.ERROR else "")
                + f" On its hosts: {on_hosts}")})
        return RunResult(ident=ident, entry=entry.id, check=check, status=status, rc=rc, preview=preview,
                         reports=reports_from_events(entry.id, events), artifact_dir=str(private),
                         duration_s=round(duration - sum(f.duration_s for f in followed), 3), then=followed)

    def stop_on_hosts(self, hosts: list[str], ident: str, timeout_s: int = 30) -> str:
        """End what a stopped run left running on its hosts (remediator_stop_run); one sentence saying what."""
        if not _IDENT.match(ident):
            return f"not stopped: the run's name {ident!r} cannot be passed to the host."
        said: list[str] = []
        private = self.runs_dir / ident / f"stop-{time.time_ns()}"
        private.mkdir(parents=True, mode=0o700)

        def keep(event: dict[str, Any]) -> bool:
            if event.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                data = event["event_data"]
                res = data.get("res") or {}
                ended, cancelled, stopped = res.get("ended") or [], res.get("cancelled") or [], res.get("stopped") or []
                said.append(f"{data.get('host')}: " + (
                    res.get("msg", "") if event["event"] != "runner_on_ok" else
                    (f"ended {len(ended)} processes of the run ({'; '.join(ended[:3])})" if ended
                     else "nothing of the run was running")
                    + (f", cancelled its job(s) {', '.join(cancelled)}" if cancelled else "")
                    + (f", stopped {', '.join(stopped)}, which it had left starting or stopping" if stopped else "")
                ) + ".")
            return False
        try:
            r = ansible_runner.run(private_data_dir=str(private), inventory=str(self.inventory),
                                   host_pattern=",".join(hosts), module="remediator_stop_run",
                                   module_args=f"run={ident}", forks=self.forks, quiet=True,
                                   suppress_env_files=True, timeout=timeout_s, event_handler=keep,
                                   envvars={**run_env(self.tether), "ANSIBLE_LIBRARY": str(LIBRARY)})
        except Exception as exc:   # the stop is best effort, and says so
            return f"could not be stopped: {exc}."
        return " ".join(said) or f"could not be stopped ({r.status})."


def run_env(tether: Path) -> dict[str, str]:
    """The environment every ansible-runner call of this engine gets."""
    return {
        # ansible-runner turns host-key checking off unless told: on, and the inventory decides per host or
        # group (ansible_host_key_checking), never this engine
        "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PIPELINING": "True", "ANSIBLE_NOCOLOR": "1",
        # a host's connection (SSH, and under mitogen its Python's start) gets 30 s, not Ansible's 10: a host slow to
        # answer while this engine's machine is busy (a storm; CI saw a drill's read fail at 10 s) is not unreachable.
        # The inventory's ansible_ssh_timeout still decides per host.
        "ANSIBLE_TIMEOUT": "30",
        # Python's warnings about ansible-playbook's own imports (cryptography 51 deprecates the DSA that
        # ansible-core imports) are not the run's output; Ansible's own warnings go through its Display and stay
        "PYTHONWARNINGS": "ignore",
        # ansible-playbook from the same installation as this engine (even when `remediator` was started by its
        # full path with the venv not on PATH), through its tether: it dies with this process
        "PATH": os.pathsep.join([str(tether), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        PARENT_ENV: str(os.getpid()),
    }


def _split_by_play(events: list[dict[str, Any]], plays: list[int]) -> list[list[dict[str, Any]]]:
    """The events of one invocation of several playbooks, per playbook (by their plays' starts, in order)."""
    owner = [i for i, n in enumerate(plays) for _ in range(n)]
    out: list[list[dict[str, Any]]] = [[] for _ in plays]
    started = -1
    for ev in events:
        if ev.get("event") == "playbook_on_play_start":
            started += 1
        out[owner[min(max(started, 0), len(owner) - 1)]].append(ev)
    return out


def _followup(ident: str, entry: CatalogEntry, events: list[dict[str, Any]], hosts: list[str], artifact_dir: str,
              status: RunStatus) -> RunResult:
    """A diagnostic that ran after a real run, in its invocation: its own result, from its own events."""
    reports = reports_from_events(entry.id, events)
    preview = build_preview(entry.id, events, False, hosts)
    if not any(e.get("event") == "playbook_on_play_start" for e in events):
        preview = preview.model_copy(update={"ok": False, "summary": f"{entry.id}: did not run (the run before it "
                                                                     f"ended {status.value})"})
    stamps = [datetime.fromisoformat(e["created"]).timestamp() for e in events if e.get("created")]
    ok = bool(reports) and len(reports) == len(hosts)
    return RunResult(ident=ident, entry=entry.id, check=False, status=RunStatus.SUCCESSFUL if ok else RunStatus.FAILED,
                     rc=0 if ok else None, preview=preview, reports=reports, artifact_dir=artifact_dir,
                     duration_s=round(max(stamps) - min(stamps), 3) if len(stamps) > 1 else 0.0)
