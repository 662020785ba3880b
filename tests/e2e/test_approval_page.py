"""A rollback on a lab host waits for a person: the dry run drifts after a first approval (nothing
runs; a new request says why), then an approver logs in to the page in a real browser (Playwright
driving Debian's Chromium), reads the dry run and its diff, clicks Approve, and watches the incident
reach `resolved` while the host is rolled back. Screenshots go to var/test-artifacts/approval-page/.

The module's tests run in file order on api-server-01, and put the host back afterwards."""
import json
import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from remediator.engine import PROJECT_ROOT
from tests.e2e.conftest import PAYLOADS, Server, on_host

pytestmark = pytest.mark.e2e
HOST = "api-server-01"
ARTIFACTS = PROJECT_ROOT / "var" / "test-artifacts" / "approval-page"
# Debian's Chromium as root on these machines: no sandbox, and no background calls to a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOTFIX = "/opt/webapp/releases/1.4.1a"


def _current() -> str:
    return on_host(HOST, "sh", "-c", "readlink /opt/webapp/current | xargs basename").stdout.strip()


def _reset_host() -> None:
    on_host(HOST, "sh", "-c", f"rm -rf {HOTFIX} && ln -sfn /opt/webapp/releases/1.4.2 /opt/webapp/current "
                              "&& systemctl restart webapp")


@pytest.fixture(scope="module")
def pages(tmp_path_factory, lab_fleet, receivers):
    _reset_host()
    s = Server(tmp_path_factory.mktemp("serve-pages"), receivers)
    yield s
    s.stop()
    _reset_host()


@pytest.fixture(scope="module")
def alice(pages) -> str:
    added = pages.cli("approvers", "add", "alice", "--role", "approver")
    assert added.returncode == 0, added.stderr
    return re.search(r"rmd_\S+", added.stdout).group(0)


@pytest.fixture(scope="module")
def waiting(pages) -> str:
    r = pages.post(PAYLOADS / "bad-release-api-server-01.json")
    (incident_id,) = pages.taken_in(r)["incidents"]
    d = pages.wait_state(incident_id, {"awaiting_approval", "denied", "escalated", "failed"})
    assert d["state"] == "awaiting_approval", d["reason"]
    assert "from 1.4.2 to 1.4.1 and restart webapp" in d["preview"]["summary"]
    return incident_id


def test_the_dry_run_reads_the_same_in_the_api_the_cli_and_slack(pages, waiting, receivers):
    (pending,) = [a for a in pages.client.get("/approvals").json() if a["incident_id"] == waiting]
    assert "from 1.4.2 to 1.4.1 and restart webapp" in pending["preview"]["summary"]
    assert pending["risk"] == "approval" and pending["rollback"] and pending["rules"] == ["risky-entries-need-approval"]
    shown = pages.cli("approvals", "show", pending["id"])
    assert shown.returncode == 0, shown.stderr
    assert "from 1.4.2 to 1.4.1" in shown.stdout and "+src: /opt/webapp/releases/1.4.1" in shown.stdout
    slack = receivers.wait_for("slack", lambda b: f"/ui/approvals/{pending['id']}" in json.dumps(b))
    assert "Needs approval" in slack["text"] and "from 1.4.2 to 1.4.1" in json.dumps(slack)


def test_a_dry_run_that_changes_after_approval_is_not_run(pages, alice, waiting):
    (first,) = [a for a in pages.client.get("/approvals").json() if a["incident_id"] == waiting]
    # Between the request and the click, someone deploys a release the rollback would now pick.
    on_host(HOST, "sh", "-c", f"mkdir -p {HOTFIX} && cp /opt/webapp/releases/1.4.1/webapp.py {HOTFIX}/ "
                              f"&& echo 1.4.1a > {HOTFIX}/VERSION && touch -d '2026-01-01 12:00' {HOTFIX}")
    r = pages.client.post(f"/approvals/{first['id']}/approve", json={"digest": first["digest"]},
                          headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 200, r.text

    deadline = time.monotonic() + 120
    while True:       # the worker checks again, sees another dry run, and asks anew
        mine = [a for a in pages.client.get("/approvals", params={"state": "all"}).json() if a["incident_id"] == waiting]
        if len(mine) == 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(mine) == 2, pages.client.get(f"/incidents/{waiting}").json()["reason"]
    new, old = mine                                                                    # newest first
    assert old["state"] == "approved" and new["state"] == "pending" and new["supersedes"] == old["id"]
    assert "to 1.4.1a" in new["preview"]["summary"] and new["digest"] != old["digest"]
    d = pages.client.get(f"/incidents/{waiting}").json()
    assert d["state"] == "awaiting_approval"
    assert "the dry run changed after alice approved it" in d["reason"] and "nothing was run" in d["reason"]
    assert not any(run["mode"] == "apply" for run in d["runs"])
    assert _current() == "1.4.2"


def test_an_approver_approves_in_the_browser_and_sees_it_fixed(pages, alice, waiting):
    (pending,) = [a for a in pages.client.get("/approvals").json() if a["incident_id"] == waiting]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.goto(f"{pages.url}/ui/approvals")
            expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/approvals$"))     # no session: the login page
            page.fill("input[name=token]", alice)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Waiting for a decision")
            page.screenshot(path=str(ARTIFACTS / "1-list.png"), full_page=True)

            page.click(f"a[href='/ui/approvals/{pending['id']}']")
            expect(page.locator("#summary")).to_contain_text("would point current from 1.4.2 to 1.4.1a and restart webapp")
            expect(page.locator("pre.diff .add").first).to_be_visible()                 # the --diff, highlighted
            expect(page.get_by_text("the dry run changed after alice approved it")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "2-approval.png"), full_page=True)

            page.fill("form[action$='/approve'] input[name=comment]", "hotfix release is fine to go back to")
            page.click("#approve")
            expect(page).to_have_url(re.compile(rf"/ui/incidents/{waiting}$"))
            final = re.compile(r"^(resolved|escalated|failed|denied)$")
            expect(page.locator("#incident-state")).to_have_text(final, timeout=180_000)       # the page refreshes itself
            page.screenshot(path=str(ARTIFACTS / "3-resolved.png"), full_page=True)
            expect(page.locator("#incident-state")).to_have_text("resolved", timeout=1000)
        finally:
            browser.close()

    assert _current() == "1.4.1a"
    d = pages.client.get(f"/incidents/{waiting}").json()
    assert d["state"] == "resolved"
    modes = [run["mode"] for run in d["runs"]]
    assert modes.count("apply") == 1 and modes.index("check") < modes.index("apply")
    votes = [e["data"] for e in d["timeline"] if e["kind"] == "approval.vote"]
    assert [(v["by"], v["digest"]) for v in votes] == [("alice", a["digest"]) for a in
                                                       sorted(pages.client.get("/approvals", params={"state": "all"}).json(),
                                                              key=lambda a: a["requested_at"]) if a["incident_id"] == waiting]
    assert (ARTIFACTS / "3-resolved.png").stat().st_size > 10_000
