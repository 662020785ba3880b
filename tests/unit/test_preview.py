import json

import pytest

from remediator.engine.run.preview import build_preview
from tests.conftest import FIXTURES

pytestmark = pytest.mark.unit


def events(name):
    return json.loads((FIXTURES / "events" / f"{name}.json").read_text())


def test_restart_preview_says_what_would_restart():
    p = build_preview("restart_service", events("restart_service-check"), check=True, hosts=["app-server-01"])
    assert p.ok
    assert p.summary == "restart_service: app-server-01: would restart webapp.service."
    [host] = p.hosts
    assert host.changed == 1 and not host.failed
    assert [t.task for t in host.tasks if t.changed] == ["Restart webapp.service"]


def test_clean_logs_preview_lists_files_and_size():
    p = build_preview("clean_logs", events("clean_logs-check"), check=True, hosts=["app-server-01"])
    assert "would delete 3 files, 6.00 KB (6144 bytes), all under /var/log/webapp" in p.summary
    assert p.touched_paths() == ["/var/log/webapp/old-1.log", "/var/log/webapp/old-2.log", "/var/log/webapp/old-3.log"]
    delete = next(t for t in p.hosts[0].tasks if t.task.endswith("Delete the old files"))
    assert len(delete.items) == 3 and "absent" in delete.diff


def test_failed_check_is_not_ok_and_says_why():
    p = build_preview("restart_service", events("restart_service-unknown-unit-check"), check=True, hosts=["app-server-01"])
    assert not p.ok
    assert "unit nosuch.service is not loaded on app-server-01" in p.summary


def test_host_without_events_counts_as_unreachable():
    p = build_preview("restart_service", events("restart_service-check"), check=True, hosts=["app-server-01", "ghost"])
    assert not p.ok
    assert "ghost: no result" in p.summary


def test_digest_binds_to_what_would_change():
    a = build_preview("clean_logs", events("clean_logs-check"), check=True, hosts=["app-server-01"])
    fewer = [e for e in events("clean_logs-check") if "Delete" not in e["event_data"].get("task", "")]
    b = build_preview("clean_logs", fewer, check=True, hosts=["app-server-01"])
    assert a.digest == build_preview("clean_logs", events("clean_logs-check"), True, ["app-server-01"]).digest
    assert a.digest != b.digest


def test_a_templates_diff_names_its_file_and_not_a_temporary_one():
    """A template renders to a temporary file named anew on every run; were it in the diff, the digest an approver
    votes on would change by itself, and the approval would drift forever (found in the nginx_upstream drill)."""
    recorded = events("nginx_upstream-check")
    a = build_preview("nginx_upstream", recorded, check=True, hosts=["app-server-02"])
    render = next(t for t in a.hosts[0].tasks if t.task.endswith("Render the upstream file"))
    assert render.diff.startswith("--- /etc/nginx/upstreams/webapp.conf\n+++ /etc/nginx/upstreams/webapp.conf\n")
    assert "+    server 127.0.0.1:8080 weight=1 down;" in render.diff
    again = json.loads(json.dumps(recorded).replace("ansible-local-", "ansible-local-another-run-"))
    assert build_preview("nginx_upstream", again, check=True, hosts=["app-server-02"]).digest == a.digest
