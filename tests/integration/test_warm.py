"""The warm Ansible (remediator/engine/run/warm.py) against a lab host: a run through it is the run a new
ansible-playbook makes (same events, same Preview and digest), it runs in the warm process (its log says so),
a run it cannot be exactly becomes the real ansible-playbook, and an inventory edit puts a new process in place."""
import json
from pathlib import Path

import pytest

from remediator.engine.model.records import RunStatus
from remediator.engine.run.runner import AnsibleExecutor
from tests.lab import INVENTORY

pytestmark = pytest.mark.integration


def _events(run) -> list[tuple]:
    """A run's events as ansible-runner recorded them, without what differs from run to run (times, uuids, pids)."""
    out = []
    for f in sorted((Path(run.artifact_dir) / "artifacts" / "run" / "job_events").glob("*.json"),
                    key=lambda f: int(f.name.split("-")[0])):
        e = json.loads(f.read_text())
        if e["event"] == "verbose":   # a line printed outside Ansible's callback: its text is the event
            out.append((e["event"], e["stdout"]))
            continue
        data = e["event_data"]
        res = data.get("res") or {}
        out.append((e["event"], data.get("task"), data.get("host"), sorted(res), res.get("changed"),
                    res.get("rc"), res.get("msg")))
    return out


def _log(executor: AnsibleExecutor) -> str:
    return (executor.runs_dir / ".warm" / "warm.log").read_text()


def test_a_warm_run_is_the_run_a_new_ansible_playbook_makes(catalog, lab_host, tmp_path):
    entry = catalog.get("service_status")
    params = entry.validate_params({"unit": "webapp"})
    cold = AnsibleExecutor(tmp_path / "cold", INVENTORY, warm=False)
    warm = AnsibleExecutor(tmp_path / "warm", INVENTORY)
    try:
        runs = {name: [ex.run(entry, params, [lab_host], check=check, ident=f"{name}-{i}", timeout_s=120)
                       for i, check in enumerate((True, False, False))]
                for name, ex in (("cold", cold), ("warm", warm))}
        for c, w in zip(runs["cold"], runs["warm"], strict=True):
            assert c.status == w.status == RunStatus.SUCCESSFUL, (c.preview.summary, w.preview.summary)
            assert _events(c) == _events(w)
            assert c.preview.summary == w.preview.summary and c.preview.digest == w.preview.digest
            assert c.reports[lab_host].keys() == w.reports[lab_host].keys()
            assert w.reports[lab_host]["active_state"] == "active"
        log = _log(warm)
        assert log.count(" run ") == 3 and "not warm" not in log, log   # each a fork of the warm process
        assert not (tmp_path / "cold" / ".warm" / "warm.log").exists()
        # kept connections: the reads after the first are well under the first (which set up the host's Python)
        assert max(w.duration_s for w in runs["warm"][1:]) < runs["cold"][1].duration_s, \
            [r.duration_s for r in runs["warm"]] + [r.duration_s for r in runs["cold"]]
    finally:
        warm.close()
        cold.close()
    assert "stopped" in _log(warm)


def test_a_run_that_differs_in_a_setting_read_at_import_is_the_real_ansible_playbook(catalog, lab_host, tmp_path,
                                                                                      monkeypatch):
    executor = AnsibleExecutor(tmp_path, INVENTORY)
    entry = catalog.get("service_status")
    params = entry.validate_params({"unit": "webapp"})
    try:
        # the same executor's next run asks for another callback whitelist: the warm process read its own at import
        plain = executor._env
        monkeypatch.setattr(executor, "_env", lambda roles: {**plain(roles), "ANSIBLE_CALLBACKS_ENABLED": "timer"})
        run = executor.run(entry, params, [lab_host], check=True, ident="differs", timeout_s=120)
        assert run.status == RunStatus.SUCCESSFUL, run.preview.summary
        assert "not warm, it is the real ansible-playbook: ANSIBLE_CALLBACKS_ENABLED differ" in _log(executor)
        stdout = (Path(run.artifact_dir) / "artifacts" / "run" / "stdout").read_text()
        assert "Playbook run took" in stdout   # the timer callback ran: the setting was the run's
    finally:
        executor.close()


def test_an_edited_inventory_puts_a_new_warm_process_in_place(catalog, lab_host, tmp_path):
    inventory = tmp_path / "inventory" / "lab.yml"
    inventory.parent.mkdir()
    inventory.write_text(INVENTORY.read_text().replace("{{ inventory_dir }}", str(INVENTORY.parent)))
    executor = AnsibleExecutor(tmp_path / "runs", inventory)
    entry = catalog.get("service_status")
    params = entry.validate_params({"unit": "webapp"})
    try:
        first = executor.run(entry, params, [lab_host], check=True, ident="first", timeout_s=120)
        server = executor.warm._proc
        inventory.write_text(inventory.read_text() + "\n# edited\n")
        second = executor.run(entry, params, [lab_host], check=True, ident="second", timeout_s=120)
        assert first.status == second.status == RunStatus.SUCCESSFUL, (first.preview.summary, second.preview.summary)
        assert executor.warm._proc is not server and executor.warm._proc.poll() is None
        server.wait(20)   # the first, with no run left in it, drained and went
        assert _log(executor).count("ready:") == 2 and "drained" in _log(executor)
    finally:
        executor.close()


def test_a_tether_that_cannot_reach_the_warm_process_runs_the_real_ansible_playbook(catalog, lab_host, tmp_path,
                                                                                    monkeypatch):
    executor = AnsibleExecutor(tmp_path, INVENTORY)
    monkeypatch.setattr(executor.warm, "socket", lambda: tmp_path / "gone" / "warm.sock")
    entry = catalog.get("service_status")
    try:
        run = executor.run(entry, entry.validate_params({"unit": "webapp"}), [lab_host], check=True, ident="cold",
                           timeout_s=120)
        assert run.status == RunStatus.SUCCESSFUL and run.reports[lab_host]["active_state"] == "active"
        assert not (tmp_path / ".warm" / "warm.log").exists()   # no warm process was ever started
    finally:
        executor.close()


def test_another_user_cannot_hand_the_warm_process_a_run(catalog, lab_host, tmp_path):
    """Whoever reaches the socket runs ansible-playbook as the engine: only the engine's own user may."""
    import subprocess
    import sys
    executor = AnsibleExecutor(tmp_path, INVENTORY)
    try:
        sock = executor.warm.socket()
        assert sock is not None and sock.exists()
        probe = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')"
        other = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                probe, str(sock)], capture_output=True, text=True)
        assert other.returncode != 0 and "connected" not in other.stdout
        assert "Permission denied" in other.stderr, other.stderr
    finally:
        executor.close()


def test_an_idle_warm_process_ends_and_the_next_run_starts_another(catalog, lab_host, tmp_path):
    # 5 s: a run's tether reaches the server well within it even on a busy machine (2 s was tight on CI)
    executor = AnsibleExecutor(tmp_path, INVENTORY, warm_idle_s=5)
    entry = catalog.get("service_status")
    params = entry.validate_params({"unit": "webapp"})
    try:
        first = executor.run(entry, params, [lab_host], check=True, ident="first", timeout_s=120)
        server = executor.warm._proc
        assert server.wait(30) == 0   # idle for 5 s: it ended on its own, its host connections with it
        second = executor.run(entry, params, [lab_host], check=True, ident="second", timeout_s=120)
        assert first.status == second.status == RunStatus.SUCCESSFUL, (first.preview.summary, second.preview.summary)
        assert executor.warm._proc is not server
        log = _log(executor)
        assert "idle for 5 s" in log and log.count("ready:") == 2 and "not warm" not in log, log
    finally:
        executor.close()
