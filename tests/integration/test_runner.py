import subprocess
import tempfile
import time

import pytest

from remediator.engine import PROJECT_ROOT
from remediator.engine.model.records import RunStatus
from tests.integration.conftest import on_host
from tests.lab import container

pytestmark = pytest.mark.integration


def test_check_changes_nothing_then_apply_fixes(catalog, executor, lab_host):
    on_host("systemctl", "stop", "webapp")
    entry = catalog.get("restart_service")
    params = entry.validate_params({"unit": "webapp", "reason": "integration test"})

    check = executor.run(entry, params, [lab_host], check=True, ident="t-check", timeout_s=120)
    assert check.status == RunStatus.SUCCESSFUL and check.preview.ok
    assert "would restart webapp.service" in check.preview.summary
    assert on_host("systemctl", "is-active", "webapp").stdout.strip() == "inactive"

    apply = executor.run(entry, params, [lab_host], check=False, ident="t-apply", timeout_s=120)
    assert apply.status == RunStatus.SUCCESSFUL, apply.preview.summary
    assert on_host("systemctl", "is-active", "webapp").stdout.strip() == "active"


def test_the_verify_reads_follow_the_real_run_in_its_invocation(catalog, executor, lab_host):
    """One ansible-playbook for the restart and the first verify read: each gets its own result, the read sees the
    host after the restart, and a follow-up that is not read-only is refused."""
    from remediator.engine.decide.evidence import verify_reads
    on_host("systemctl", "stop", "webapp")
    entry = catalog.get("restart_service")
    params = entry.validate_params({"unit": "webapp", "reason": "integration test"})
    run = executor.run(entry, params, [lab_host], check=False, ident="t-then", timeout_s=120,
                       then=verify_reads(catalog, entry, params))
    assert run.status == RunStatus.SUCCESSFUL and run.preview.ok and run.entry == "restart_service"
    assert "restart" in run.preview.summary and not run.reports
    (read,) = run.then
    assert read.entry == "service_status" and read.status == RunStatus.SUCCESSFUL and read.duration_s > 0
    assert read.reports[lab_host]["active_state"] == "active"
    assert "Read the unit's state" in {t.task for t in read.preview.hosts[0].tasks}     # each play's tasks in its own
    assert "Read the unit's state" not in {t.task for t in run.preview.hosts[0].tasks}
    with pytest.raises(ValueError, match="only read-only"):
        executor.run(entry, params, [lab_host], check=False, ident="t-then2", timeout_s=60, then=[(entry, params)])


def test_templated_values_are_never_evaluated(catalog, executor, lab_host, tmp_path):
    marker = tmp_path / "pwned"
    hostile = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    entry = catalog.get("restart_service")
    run = executor.run(entry, entry.validate_params({"unit": "webapp", "reason": hostile}), [lab_host],
                       check=False, ident="t-unsafe", timeout_s=120)
    assert run.status == RunStatus.SUCCESSFUL, run.preview.summary
    assert not marker.exists(), "a parameter value was templated on the controller"
    journal = on_host("journalctl", "--identifier", "remediator", "--no-pager").stdout
    assert hostile in journal   # recorded literally on the host


def test_failing_task_is_a_failed_run_with_the_reason(catalog, executor, lab_host):
    """The role itself refuses a unit off the inventory's list (policy would deny it first; a hand run must too)."""
    entry = catalog.get("restart_service")
    run = executor.run(entry, entry.validate_params({"unit": "poweroff.target", "reason": "r"}), [lab_host],
                       check=True, ident="t-fail", timeout_s=120)
    assert run.status == RunStatus.FAILED and not run.preview.ok
    assert "refusing to restart poweroff.target on app-server-01: not on its remediator_services" in run.preview.summary


def test_unreachable_host_is_reported(catalog, executor, lab_host):
    # app-server-02 is in the inventory; make sure no container answers for it.
    subprocess.run(["podman", "rm", "--force", "--time", "0", container("app-server-02")], capture_output=True)
    entry = catalog.get("restart_service")
    run = executor.run(entry, entry.validate_params({"unit": "webapp", "reason": "r"}), ["app-server-02"],
                       check=True, ident="t-unreach", timeout_s=120)
    assert run.status == RunStatus.FAILED
    assert run.preview.hosts[0].unreachable and not run.preview.ok


def test_diagnostic_report_comes_back_as_data(catalog, executor, lab_host):
    on_host("sh", "-c", "truncate -s 4096 /var/log/webapp/diag-old.log && touch -d '10 days ago' /var/log/webapp/diag-old.log")
    entry = catalog.get("disk_usage")
    run = executor.run(entry, entry.validate_params({"paths": ["/var/log/webapp"]}), [lab_host],
                       check=False, ident="t-diag", timeout_s=120)
    report = run.reports[lab_host]
    assert int(report["old_files"]) >= 1 and "/var/log/webapp/diag-old.log" in report["largest_old_files"]
    assert on_host("test", "-f", "/var/log/webapp/diag-old.log").returncode == 0


def test_a_hanging_playbook_is_stopped_at_its_timeout_and_leaves_nothing_running(catalog, executor, lab_host):
    """A unit whose restart hangs: the run ends as `timeout` at remediator's limit, no ansible-playbook is left here,
    and nothing of the run is left on the host: not the module, not its `systemctl restart`, not the restart job
    systemd had queued for it (which ran on after ansible-playbook was killed, before the remote stop)."""
    on_host("sh", "-c", "mkdir -p /etc/systemd/system/worker@.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 600\\n'"
                        " > /etc/systemd/system/worker@.service.d/hang.conf && systemctl daemon-reload")
    try:
        entry = catalog.get("restart_service")
        started = time.monotonic()
        run = executor.run(entry, entry.validate_params({"unit": "worker@1", "reason": "r"}), [lab_host],
                           check=False, ident="t-hang", timeout_s=15)
        assert run.status == RunStatus.TIMEOUT and not run.preview.ok
        assert "the run was stopped (timeout)" in run.preview.summary and "may have done part" in run.preview.summary
        assert time.monotonic() - started < 60
        assert "On its hosts: app-server-01: ended" in run.preview.summary, run.preview.summary
        assert "cancelled its job(s) start worker@1.service" in run.preview.summary, run.preview.summary
        assert "stopped worker@1.service, which it had left starting" in run.preview.summary, run.preview.summary
        time.sleep(1)
        left = subprocess.run(["pgrep", "-f", "t-hang"], capture_output=True, text=True).stdout.split()
        assert left == [], f"still running: {left}"
        marked = on_host("sh", "-c", "grep -lsa REMEDIATOR_RUN=t-hang /proc/[0-9]*/environ; true").stdout.split()
        assert [m for m in marked if not m.startswith("/proc/self/")] == [], marked
        assert on_host("pgrep", "-f", "systemctl restart").stdout == ""
        assert on_host("systemctl", "list-jobs", "--no-legend").stdout.strip() == ""
        assert on_host("pgrep", "-x", "sleep").stdout == "", on_host("ps", "-ef").stdout   # the unit's start, stopped
        assert on_host("systemctl", "is-active", "worker@1").stdout.strip() in ("inactive", "failed")
    finally:
        on_host("sh", "-c", "rm -rf /etc/systemd/system/worker@.service.d && systemctl daemon-reload "
                            "&& systemctl restart worker@1")


def _slow_proxy(upstream_port: int, delay_s: float) -> int:
    """A TCP proxy on loopback that holds each connection `delay_s` before it reaches the host's sshd: a host slow to
    answer, as a busy machine makes it (CI: a drill's read failed with Ansible's 10 s connection timeout)."""
    import socket
    import threading
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with a, b:
            while data := a.recv(65536):
                b.sendall(data)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            time.sleep(delay_s)
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream.dup(), client.dup()), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_host_slow_to_answer_is_read_not_unreachable(catalog, lab_host, tmp_path):
    import yaml

    from remediator.engine.run.runner import AnsibleExecutor
    from tests.lab import INVENTORY
    doc = yaml.safe_load(INVENTORY.read_text().replace("{{ inventory_dir }}/..", str(PROJECT_ROOT)))
    host = doc["all"]["children"]["app"]["hosts"][lab_host]
    host["ansible_port"] = _slow_proxy(int(host["ansible_port"]), delay_s=14)
    short = tempfile.mkdtemp(prefix="cp")   # a new connection, not the lab's shared one (a socket path is short)
    doc["all"]["vars"]["ansible_control_path"] = f"{short}/%%h"
    inventory = tmp_path / "slow.yml"
    inventory.write_text(yaml.safe_dump(doc))
    executor = AnsibleExecutor(tmp_path / "runs", inventory)
    try:
        entry = catalog.get("service_status")
        run = executor.run(entry, entry.validate_params({"unit": "webapp"}), [lab_host], check=True, ident="t-slow",
                           timeout_s=120)
    finally:
        executor.close()
    assert run.status == RunStatus.SUCCESSFUL and not run.preview.hosts[0].unreachable, run.preview.summary
