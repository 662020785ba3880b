"""What drills and scenarios do to the lab beside remediator: run a command on a lab host (`podman exec`), probe its
state, post or end an alert at the lab's Alertmanager, and act as the person who approves or rejects a dry run.

They believe the host, not remediator; they never touch a host that is not a lab container."""
from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from remediator.engine.catalog.loader import Probe
from remediator.engine.lab.fleet import PODMAN_TIMEOUT_S

__all__ = ["exec_on", "probe", "fire", "wait_cleared", "read", "approve", "reject"]


def exec_on(container: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Run argv on the lab host (no shell on this side; the argv may itself be `sh -c`, on the host)."""
    return subprocess.run(["podman", "exec", container, *argv], capture_output=True, text=True, timeout=PODMAN_TIMEOUT_S)


def probe(container: str, check: Probe) -> str | None:
    """None when the probe holds, else what was seen."""
    r = exec_on(container, check.argv)
    if r.returncode != check.rc:
        return f"{' '.join(check.argv)}: exit {r.returncode}, expected {check.rc} ({(r.stdout + r.stderr).strip()[:200]})"
    if check.stdout is not None and r.stdout.strip() != check.stdout:
        return f"{' '.join(check.argv)}: {r.stdout.strip()[:200]!r}, expected {check.stdout!r}"
    return None


def fire(alertmanager_url: str, labels: dict[str, str], minutes: int, description: str = "fired by a chaos drill") -> None:
    """Post an alert to Alertmanager's API v2 (minutes=0: it ends now, as a Prometheus says once the fault is gone)."""
    now = datetime.now(UTC)
    body = [{"labels": labels, "annotations": {"description": description},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=minutes)).isoformat()}]
    httpx.post(f"{alertmanager_url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


def wait_cleared(alertmanager_url: str, alertname: str, host: str, timeout_s: float) -> bool:
    """True once Alertmanager shows no active `alertname` for `host` (False after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            active = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=5, params=[
                ("active", "true"), ("filter", f'alertname="{alertname}"'), ("filter", f'host="{host}"')]).json()
            if not active:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    return False


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, httpx.HTTPStatusError)
                                                     and exc.response.status_code >= 500)


@retry(retry=retry_if_exception(_busy), stop=stop_after_delay(90), wait=wait_exponential(max=10), reraise=True)
def read(api: httpx.Client, path: str, **params: Any) -> Any:
    """GET from remediator's API, as JSON. A serve busy beside a loaded lab (a timeout, a 5xx) is asked again for up
    to 90 s: a drill or scenario is judged on what remediator did, not on one slow answer to its judge."""
    r = api.get(path, params=params or None)
    r.raise_for_status()
    return r.json()


def _pending_digest(api: httpx.Client, incident_id: str) -> str | None:
    detail = read(api, f"/incidents/{incident_id}")
    pending = [a for a in detail["approvals"] if a["state"] == "pending"]
    return pending[0]["preview_digest"] if pending else None


def approve(api: httpx.Client, incident_id: str) -> None:
    """Approve exactly the dry run the incident shows (its pending approval's digest), as a person would."""
    if digest := _pending_digest(api, incident_id):
        api.post(f"/incidents/{incident_id}/approve", json={"digest": digest, "comment": "drill approval"})


def reject(api: httpx.Client, incident_id: str, comment: str) -> None:
    """Reject the incident's pending dry run (a held scenario ends as a person would end it)."""
    if digest := _pending_digest(api, incident_id):
        api.post(f"/incidents/{incident_id}/reject", json={"digest": digest, "comment": comment})
