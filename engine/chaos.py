"""Chaos drills: break a lab host, let the real chain (Prometheus -> Alertmanager -> remediator)
respond, and judge the end state by probing the host itself, not by remediator's word.

A drill is data in its entry's meta/remediator.yml (`drill:`). The runner talks to a running
`remediator serve` over its API and to the lab hosts with `podman exec`; it never touches a host
that is not a lab container.
"""
from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx
from pydantic import BaseModel

from engine.catalog import Catalog, Drill, Probe
from engine.errors import ConfigError
from engine.lab import LabHost

__all__ = ["DrillResult", "run_drill", "drills_of", "report_markdown"]

_FINAL = {"resolved", "failed", "escalated", "denied", "rejected", "expired", "awaiting_approval"}


class DrillResult(BaseModel):
    drill: str
    host: str
    alert: str
    expected: str
    got: str
    seconds_to_fix: float | None
    ok: bool
    problems: list[str]
    incident: str | None = None


def drills_of(catalog: Catalog, only: str | None = None) -> list[tuple[str, Drill]]:
    """(entry id, drill) for every entry that declares one, or just `only`."""
    found = [(e.id, e.meta.drill) for e in catalog if e.meta.drill is not None]
    if only:
        found = [d for d in found if d[0] == only]
        if not found:
            raise ConfigError(f"no drill named {only!r}; drills: {', '.join(e for e, _ in drills_of(catalog))}")
    return found


def _exec(container: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", "exec", container, *argv], capture_output=True, text=True, timeout=60)


def _probe(container: str, probe: Probe) -> str | None:
    """None when the probe holds, else what was seen."""
    r = _exec(container, probe.argv)
    if r.returncode != probe.rc:
        return f"{' '.join(probe.argv)}: exit {r.returncode}, expected {probe.rc} ({(r.stdout + r.stderr).strip()[:200]})"
    if probe.stdout is not None and r.stdout.strip() != probe.stdout:
        return f"{' '.join(probe.argv)}: {r.stdout.strip()[:200]!r}, expected {probe.stdout!r}"
    return None


def run_drill(name: str, drill: Drill, hosts: dict[str, LabHost], api: httpx.Client, alertmanager_url: str | None
              ) -> DrillResult:
    """Inject, wait for the incident, and check: entry, verdict, check before apply, fixed, unharmed, alert cleared."""
    host = hosts.get(drill.host)
    if host is None:
        raise ConfigError(f"drill {name}: {drill.host} is not a lab host")
    expected = f"{name} {drill.verdict} -> {drill.state}"
    problems: list[str] = []
    seen_before = {i["id"] for i in api.get("/incidents", params={"limit": 1000}).json()}
    started = time.monotonic()
    for argv in drill.inject:
        r = _exec(host.container, argv)
        if r.returncode != 0:
            return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got="inject failed",
                               seconds_to_fix=None, ok=False, problems=[f"inject {argv}: {r.stderr.strip()[:300]}"])

    incident: dict[str, Any] | None = None
    deadline = started + drill.timeout_s
    while time.monotonic() < deadline:
        for row in api.get("/incidents", params={"limit": 1000}).json():
            if row["id"] not in seen_before and row["alertname"] == drill.alert and row["host"] == drill.host \
                    and row["state"] in _FINAL:
                incident = api.get(f"/incidents/{row['id']}").json()
        if incident:
            break
        time.sleep(1)
    elapsed = round(time.monotonic() - started, 1)
    if incident is None:
        return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got="no incident",
                           seconds_to_fix=None, ok=False,
                           problems=[f"no {drill.alert} incident for {drill.host} reached a final state in {drill.timeout_s} s"])

    proposal = incident.get("proposal") or {}
    decision = incident.get("decision") or {}
    got = f"{proposal.get('entry', '-')} {decision.get('verdict', '-')} -> {incident['state']}"
    if proposal.get("entry") != name:
        problems.append(f"entry {proposal.get('entry')!r}, expected {name!r}")
    if decision.get("verdict") != drill.verdict:
        problems.append(f"verdict {decision.get('verdict')!r}, expected {drill.verdict!r}")
    if incident["state"] != drill.state:
        problems.append(f"state {incident['state']!r}, expected {drill.state!r}: {incident['reason']}")
    for key, want in drill.params.items():
        if (proposal.get("params") or {}).get(key) != want:
            problems.append(f"parameter {key}={(proposal.get('params') or {}).get(key)!r}, expected {want!r}")
    modes = [r["mode"] for r in incident["runs"]]
    if "apply" in modes and ("check" not in modes or modes.index("check") > modes.index("apply")):
        problems.append("a real run happened without a check-mode run before it")
    if drill.state == "resolved":
        problems += [p for p in (_probe(host.container, pr) for pr in drill.fixed) if p]
    problems += [f"harmed: {p}" for p in (_probe(host.container, pr) for pr in drill.unharmed) if p]
    if drill.state == "resolved" and alertmanager_url:
        cleared = _wait_cleared(alertmanager_url, drill.alert, drill.host, timeout_s=90)
        if not cleared:
            problems.append(f"Alertmanager still shows {drill.alert} for {drill.host} as active")
    return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got=got,
                       seconds_to_fix=elapsed if incident["state"] == "resolved" else None, ok=not problems,
                       problems=problems, incident=incident["id"])


def _wait_cleared(alertmanager_url: str, alertname: str, host: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            active = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=5, params=[
                ("active", "true"), ("filter", f'alertname="{alertname}"'), ("filter", f'host="{host}"')]).json()
            if not active:
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(2)
    return False


def report_markdown(results: list[DrillResult]) -> str:
    rows = ["| drill | host | alert | expected | got | time to fix | result |", "|---|---|---|---|---|---|---|"]
    for r in results:
        fix = f"{r.seconds_to_fix:.1f} s" if r.seconds_to_fix is not None else "-"
        verdict = "pass" if r.ok else "FAIL: " + "; ".join(r.problems)
        rows.append(f"| {r.drill} | {r.host} | {r.alert} | {r.expected} | {r.got} | {fix} | {verdict} |")
    return "\n".join(rows) + "\n"
