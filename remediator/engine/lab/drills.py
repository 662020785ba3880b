"""Chaos drills: break a lab host, let the real chain (Prometheus -> Alertmanager -> remediator)
respond, and judge the end state by probing the host itself, not by remediator's word.

A drill is data in its entry's meta/remediator.yml (`drill:`). The runner talks to a running
`remediator serve` over its API and to the lab hosts with `podman exec`; it never touches a host
that is not a lab container.
"""
from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ValidationError

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import Catalog, Drill
from remediator.engine.errors import ConfigError
from remediator.engine.lab.fleet import LabHost, lab_hosts
from remediator.engine.lab.harness import LAB_BLAST, ServeProcess, healthy, lab_token
from remediator.engine.lab.hostops import approve, exec_on, fire, probe, read, wait_cleared
from remediator.engine.lab.monitoring import Monitoring
from remediator.engine.model.states import FINAL_STATES, IncidentState
from remediator.engine.people.identities import Identities
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store

__all__ = ["DrillResult", "NamedDrill", "Server", "run_drill", "run_drills", "drills_of", "report_markdown",
           "write_report", "SEED_DRILLS"]

SEED_DRILLS = PROJECT_ROOT / "lab" / "drills"
#: Where a drill stops waiting: a final state, or waiting for a person.
_SETTLED = {s.value for s in FINAL_STATES} | {IncidentState.AWAITING_APPROVAL.value}


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


def run_drill(name: str, entry: str | None, drill: Drill, hosts: dict[str, LabHost], api: httpx.Client,
              alertmanager_url: str, progress: Callable[[str], None] = lambda _: None,
              approver: httpx.Client | None = None) -> DrillResult:
    """Inject, wait for the incident, and check: entry, verdict, check before apply, fixed, unharmed, alert cleared.
    The drill's `cleanup` runs afterwards, however it ended (a fault left on would break the next drill)."""
    host = hosts.get(drill.host)
    if host is None:
        raise ConfigError(f"drill {name}: {drill.host} is not a lab host")
    try:
        return _judge(name, entry, drill, host, api, alertmanager_url, progress, approver)
    finally:
        for argv in drill.cleanup:
            r = exec_on(host.container, argv)
            if r.returncode != 0:
                progress(f"cleanup {argv} failed: {r.stderr.strip()[:200]}")


def _judge(name: str, entry: str | None, drill: Drill, host: LabHost, api: httpx.Client, alertmanager_url: str,
           progress: Callable[[str], None], approver: httpx.Client | None) -> DrillResult:
    expected = f"{entry or 'nothing'} {drill.verdict or '-'} -> {drill.state}"
    problems: list[str] = []
    seen_before = {i["id"] for i in read(api, "/incidents", limit=1000)}
    started = time.monotonic()
    for argv in drill.inject:
        r = exec_on(host.container, argv)
        if r.returncode != 0:
            return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got="inject failed",
                               seconds_to_fix=None, ok=False, problems=[f"inject {argv}: {r.stderr.strip()[:300]}"])
    if drill.fire:
        fire(alertmanager_url, drill.fire, minutes=10)
    progress(f"fault injected on {drill.host}; waiting for {drill.alert}")

    incident: dict[str, Any] | None = None
    deadline = started + drill.timeout_s
    while time.monotonic() < deadline:
        for row in read(api, "/incidents", limit=1000):
            if row["id"] in seen_before or row["alertname"] != drill.alert or row["host"] != drill.host:
                continue
            progress(f"incident {row['id']}: {row['state']}")
            if row["state"] == "awaiting_approval" and drill.approve and approver is not None:
                approve(approver, row["id"])
            elif row["state"] in _SETTLED:
                incident = read(api, f"/incidents/{row['id']}")
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
    said = f"{incident['reason']} {(incident.get('report') or {}).get('cause', '')}"
    if drill.says and drill.says.casefold() not in said.casefold():
        problems.append(f"the incident does not say {drill.says!r}: {said[:300]}")
    if drill.state == "resolved":
        problems += [p for p in (probe(host.container, pr) for pr in drill.fixed) if p]
    problems += [f"harmed: {p}" for p in (probe(host.container, pr) for pr in drill.unharmed) if p]
    if drill.fire:
        fire(alertmanager_url, drill.fire, minutes=0)   # as a Prometheus would once the condition is gone
    elif drill.state == "resolved" and not wait_cleared(alertmanager_url, drill.alert, drill.host, timeout_s=90):
        problems.append(f"Alertmanager still shows {drill.alert} for {drill.host} as active")
    return DrillResult(drill=name, host=drill.host, alert=drill.alert, expected=expected, got=got,
                       seconds_to_fix=elapsed if incident["state"] == "resolved" else None, ok=not problems,
                       problems=problems, incident=incident["id"])


def report_markdown(results: list[DrillResult]) -> str:
    rows = ["| drill | host | alert | expected | got | time to fix | result |", "|---|---|---|---|---|---|---|"]
    for r in results:
        fix = f"{r.seconds_to_fix:.1f} s" if r.seconds_to_fix is not None else "-"
        verdict = "pass" if r.ok else "FAIL: " + "; ".join(r.problems)
        rows.append(f"| {r.drill} | {r.host} | {r.alert} | {r.expected} | {r.got} | {fix} | {verdict} |")
    return "\n".join(rows) + "\n"


class Server:
    """The `remediator serve` the drills talk to: one already answering, or one started for them."""

    def __init__(self, settings: Settings, monitoring: Monitoring, log: Path, pid_file: Path | None = None):
        self.url = f"http://127.0.0.1:{settings.port}"
        self.token = lab_token(settings)
        self.process: ServeProcess | None = None
        self.started = False
        if healthy(self.url):
            self._accepts(settings)
            return
        env = {**LAB_BLAST, "REMEDIATOR_TOKENS": ",".join(t.get_secret_value() for t in settings.tokens) or self.token,
               "REMEDIATOR_PROMETHEUS_URL": monitoring.url("prometheus"),
               "REMEDIATOR_ALERTMANAGER_URL": monitoring.url("alertmanager")}
        log.unlink(missing_ok=True)   # this run's log only
        self.process = ServeProcess(env, settings.port, log, new_session=pid_file is not None)
        if pid_file is not None:
            pid_file.write_text(str(self.process.pid))
        self.started = True

    def _accepts(self, settings: Settings) -> None:
        """The serve already answering takes this checkout's token, or it is said now, in a line, not as a traceback
        when its first 401 is read as incidents."""
        with self.client() as api:
            status = api.get("/incidents", params={"limit": 1}).status_code
        if status in (401, 403):
            raise ConfigError(
                f"a remediator serve already answers on {self.url}, and it refuses this checkout's token (the first of "
                f"REMEDIATOR_TOKENS, else {settings.data_dir / 'serve-token'}): it was started with other tokens. Stop "
                f"it (kill $(cat {settings.data_dir / 'serve.pid'}), if it is this checkout's) and run this again, or "
                "set REMEDIATOR_TOKENS to the token it takes")

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client with the service token (or another, e.g. an approver's)."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(30)


def run_drills(settings: Settings, catalog: Catalog, server: Server, only: str | None = None,
               progress: Callable[[str, str], None] = lambda _d, _m: None) -> list[DrillResult]:
    """Every drill (or `only`), one after another, against the lab; the lab's monitoring must be up."""
    monitoring = Monitoring.for_lab(settings)
    if not all(m.running for m in monitoring.status()):
        raise ConfigError("the lab's Prometheus and Alertmanager are not running: run `remediator lab up` first")
    hosts = {h.name: h for h in lab_hosts(settings.inventory)}
    results = []
    # Drills that approve do it as a person would: with an approver's token, made for this run and revoked after.
    identities = Identities(Store(settings.db_url, settings.sqlite_synchronous), [])
    name_ = f"chaos-drill-{secrets.token_hex(3)}"
    _, token = identities.add(name_, "approver")
    try:
        with server.client() as api, server.client(token) as approver:
            for name, entry, drill in drills_of(catalog, only):
                try:
                    results.append(run_drill(name, entry, drill, hosts, api, monitoring.url("alertmanager"),
                                             progress=functools.partial(progress, name), approver=approver))
                except Exception as exc:   # the judge failed, not remediator: say so, and the rest still run
                    results.append(DrillResult(drill=name, host=drill.host, alert=drill.alert, expected="-",
                                               got="not judged", seconds_to_fix=None, ok=False, problems=[
                                                   f"the drill run itself failed: {type(exc).__name__}: {exc}"]))
                progress(name, "pass" if results[-1].ok else "FAIL")
    finally:
        identities.remove(name_)
    return results


def write_report(results: list[DrillResult], directory: Path) -> Path:
    """report.json and report.md; returns the Markdown's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps([r.model_dump() for r in results], indent=2))
    (directory / "report.md").write_text(report_markdown(results))
    return directory / "report.md"
