"""Chaos drills: break a lab host, let the real chain (Prometheus -> Alertmanager -> remediator)
respond, and judge the end state by probing the host itself, not by remediator's word.

A drill is data in its entry's meta/remediator.yml (`drill:`). The runner talks to a running
`remediator serve` over its API and to the lab hosts with `podman exec`; it never touches a host
that is not a lab container.
"""
from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ValidationError

from engine import PROJECT_ROOT
from engine.catalog import Catalog, Drill, Probe
from engine.errors import ConfigError
from engine.lab import LabHost

__all__ = ["DrillResult", "NamedDrill", "run_drill", "drills_of", "report_markdown", "SEED_DRILLS"]

SEED_DRILLS = PROJECT_ROOT / "lab" / "drills"
_FINAL = {"resolved", "failed", "escalated", "denied", "rejected", "expired", "awaiting_approval"}


class NamedDrill(Drill):
    """A drill beside the catalog (lab/drills/*.yml): it names itself and the entry it expects, or none."""

    name: str
    entry: str | None


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


def drills_of(catalog: Catalog, only: str | None = None, seed_dir: Path = SEED_DRILLS
              ) -> list[tuple[str, str | None, Drill]]:
    """(name, expected entry, drill): every entry's own drill, then lab/drills/*.yml; or just `only`."""
    found: list[tuple[str, str | None, Drill]] = [(e.id, e.id, e.meta.drill) for e in catalog if e.meta.drill is not None]
    for path in sorted(seed_dir.glob("*.yml")):
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            for item in raw.get("drills") or []:
                d = NamedDrill.model_validate(item)
                if d.entry is not None and d.entry not in catalog.entries:
                    raise ConfigError(f"{path}: drill {d.name}: unknown entry {d.entry!r}")
                found.append((d.name, d.entry, d))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if only:
        chosen = [d for d in found if d[0] == only]
        if not chosen:
            raise ConfigError(f"no drill named {only!r}; drills: {', '.join(n for n, _, _ in found)}")
        return chosen
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


def _fire(alertmanager_url: str, labels: dict[str, str], minutes: int) -> None:
    now = datetime.now(UTC)
    body = [{"labels": labels, "annotations": {"description": "fired by a chaos drill"},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=minutes)).isoformat()}]
    httpx.post(f"{alertmanager_url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


def run_drill(name: str, entry: str | None, drill: Drill, hosts: dict[str, LabHost], api: httpx.Client,
              alertmanager_url: str) -> DrillResult:
    """Inject, wait for the incident, and check: entry, verdict, check before apply, fixed, unharmed, alert cleared."""
    host = hosts.get(drill.host)
    if host is None:
        raise ConfigError(f"drill {name}: {drill.host} is not a lab host")
    expected = f"{entry or 'nothing'} {drill.verdict or '-'} -> {drill.state}"
    problems: list[str] = []
    seen_before = {i["id"] for i in api.get("/incidents", params={"limit": 1000}).json()}
    started = time.monotonic()
    for argv in drill.inject:
        r = _exec(host.container, argv)
        if r.returncode != 0:
            return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got="inject failed",
                               seconds_to_fix=None, ok=False, problems=[f"inject {argv}: {r.stderr.strip()[:300]}"])
    if drill.fire:
        _fire(alertmanager_url, drill.fire, minutes=10)

    incident: dict[str, Any] | None = None
    deadline = started + drill.timeout_s
    while time.monotonic() < deadline:
        for row in api.get("/incidents", params={"limit": 1000}).json():
            if row["id"] in seen_before or row["alertname"] != drill.alert or row["host"] != drill.host:
                continue
            if row["state"] == "awaiting_approval" and drill.approve:
                _approve(api, row["id"])
            elif row["state"] in _FINAL:
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
    if proposal.get("entry") != entry:
        problems.append(f"entry {proposal.get('entry')!r}, expected {entry!r}")
    if decision.get("verdict") != drill.verdict:
        problems.append(f"verdict {decision.get('verdict')!r}, expected {drill.verdict!r}")
    if entry is None and incident["runs"] and any(r["mode"] in ("check", "apply") for r in incident["runs"]):
        problems.append("something ran on the host although nothing may")
    for diag in drill.evidence:
        if not (incident["evidence"].get(diag) or {}).get("report"):
            problems.append(f"no {diag} evidence was gathered before acting")
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
    if drill.fire:
        _fire(alertmanager_url, drill.fire, minutes=0)   # as a Prometheus would once the condition is gone
    elif drill.state == "resolved" and not _wait_cleared(alertmanager_url, drill.alert, drill.host, timeout_s=90):
        problems.append(f"Alertmanager still shows {drill.alert} for {drill.host} as active")
    return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got=got,
                       seconds_to_fix=elapsed if incident["state"] == "resolved" else None, ok=not problems,
                       problems=problems, incident=incident["id"])


def _approve(api: httpx.Client, incident_id: str) -> None:
    """Approve exactly the dry run the incident shows (its pending approval's digest)."""
    detail = api.get(f"/incidents/{incident_id}").json()
    pending = [a for a in detail["approvals"] if a["state"] == "pending"]
    if pending:
        api.post(f"/incidents/{incident_id}/approve",
                 json={"by": "chaos drill", "digest": pending[0]["preview_digest"], "comment": "drill approval"})


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
