"""Fault scenarios: incidents as a fleet has them, not shaped like the catalog (a crash loop, an OOM kill, a unit on
no allow-list, ...), each judged as an on-call engineer would judge the engine's answer.

A scenario is data, one file in lab/scenarios/: the fault injected on a lab host (and the alert posted to
Alertmanager where no lab metric shows it), the alert that must reach remediator through the real chain, and the
right outcome: `fixed` (verified, and the host's probes agree), `held` (waiting for a person with the right proposal)
or `escalated` (nothing run), with the words that name the right cause. Whatever the expected outcome, a scenario is
**made worse** when remediator ran an action on another host, ran more than one real run (a restart loop), ran one
that failed, or when one of the scenario's `unharmed` probes no longer holds afterwards.
"""
from __future__ import annotations

import functools
import json
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remediator.engine import PROJECT_ROOT
from remediator.engine.catalog.loader import Catalog, Probe
from remediator.engine.errors import ConfigError
from remediator.engine.lab.fleet import LabHost, lab_hosts
from remediator.engine.lab.hostops import exec_on, fire, probe, read, reject, wait_cleared
from remediator.engine.lab.monitoring import Monitoring
from remediator.engine.lab.recording import record_case
from remediator.engine.model.records import RunStatus
from remediator.engine.model.states import FINAL_STATES, IncidentState
from remediator.engine.people.identities import Identities
from remediator.engine.settings import Settings
from remediator.engine.store.db import Store

if TYPE_CHECKING:   # the drills' Server is what the scenarios talk to too
    from remediator.engine.lab.drills import Server

__all__ = ["Scenario", "ScenarioResult", "Summary", "SCENARIOS", "load_scenarios", "run_scenario", "run_scenarios",
           "summarize", "made_worse", "write_report"]

SCENARIOS = PROJECT_ROOT / "lab" / "scenarios"
_SETTLED = {s.value for s in FINAL_STATES} | {IncidentState.AWAITING_APPROVAL.value}
_STATE_OF = {"fixed": IncidentState.RESOLVED.value, "held": IncidentState.AWAITING_APPROVAL.value,
             "escalated": IncidentState.ESCALATED.value}


class Scenario(BaseModel):
    """One incident as a fleet has it, and the answer an on-call engineer would call right."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    klass: str = Field(alias="class", min_length=1)     # crash loop, OOM, dependency, ...: the summary groups by it
    title: str = Field(min_length=1)                    # what happened, in one line
    host: str
    inject: list[list[str]] = []                        # argv lists run on the host, in order
    fire: dict[str, str] | None = None                  # labels of an alert posted to Alertmanager's API
    alert: str                                          # the alertname that must reach remediator
    outcome: Literal["fixed", "held", "escalated"]
    entry: str | None = None                            # fixed and held: the action; escalated: none may run
    params: dict[str, Any] = {}                         # expected parameters (a subset)
    says: list[str] = []                                # the reason, rationale or report names the right cause
    fixed: list[Probe] = []                             # true once the fault is gone (outcome fixed)
    unharmed: list[Probe] = []                          # must still hold afterwards, whatever the outcome
    cleanup: list[list[str]] = []                       # argv lists run afterwards, however it ended
    recovered: list[Probe] = []                         # true once the cleanup has put the host back
    repeat: int = Field(1, ge=1, le=5)                  # the fault comes back this often; each earlier time is fixed
    timeout_s: int = Field(120, ge=10, le=900)          # per round


class ScenarioResult(BaseModel):
    id: str
    klass: str
    host: str
    alert: str
    expected: str
    got: str
    right: bool
    worse: list[str]                 # how it was made worse (empty: it was not)
    problems: list[str]              # why it was not handled right
    seconds: float | None            # fault injected -> final state (or waiting for a person)
    fixed: bool = False              # an automatic fix that verified
    incident: str | None = None


class ClassFigures(BaseModel):
    scenarios: int
    right: int
    median_s: float | None


class Summary(BaseModel):
    scenarios: int
    right: int
    right_pct: float
    worse: int
    median_s: float | None                    # fault -> final state, every scenario that settled
    fixed_median_s: float | None              # fault -> verified, the automatic fixes
    by_class: dict[str, ClassFigures]


def load_scenarios(catalog: Catalog, directory: Path = SCENARIOS, only: str | None = None) -> list[Scenario]:
    """Every lab/scenarios/*.yml in name order (or just `only`); fail closed naming the file."""
    found: list[Scenario] = []
    for path in sorted(directory.glob("*.yml")):
        try:
            sc = Scenario.model_validate(yaml.safe_load(path.read_text()) or {})
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if sc.id != path.stem:
            raise ConfigError(f"{path}: id {sc.id!r} must be the file's name ({path.stem})")
        if sc.entry is not None and sc.entry not in catalog.entries:
            raise ConfigError(f"{path}: unknown entry {sc.entry!r}")
        if (sc.outcome == "escalated") != (sc.entry is None):
            raise ConfigError(f"{path}: an escalated scenario names no entry; a fixed or held one names its entry")
        found.append(sc)
    if only:
        chosen = [s for s in found if s.id == only]
        if not chosen:
            raise ConfigError(f"no scenario {only!r}; scenarios: {', '.join(s.id for s in found)}")
        return chosen
    return found


def run_scenario(sc: Scenario, host: LabHost, api: httpx.Client, person: httpx.Client, alertmanager_url: str,
                 progress: Callable[[str], None] = lambda _: None) -> ScenarioResult:
    """Inject, wait until the incident settles, judge it; then put the host back (cleanup), however it ended."""
    seen_before = {i["id"] for i in read(api, "/incidents", limit=1000)}
    try:
        result = _judge(sc, host, api, person, alertmanager_url, seen_before, progress)
    finally:
        for argv in sc.cleanup:
            r = exec_on(host.container, argv)
            if r.returncode != 0:
                progress(f"cleanup {argv} failed: {r.stderr.strip()[:200]}")
        if sc.fire:
            fire(alertmanager_url, sc.fire, minutes=0)
    if sc.recovered and not _recovers(sc, host):   # a host left broken would spoil the next scenario's judgement
        left = "; ".join(p for p in (probe(host.container, pr) for pr in sc.recovered) if p)
        result = result.model_copy(update={"right": False,
                                           "problems": [*result.problems, f"the host did not recover after the cleanup: {left}"]})
    return result


def _judge(sc: Scenario, host: LabHost, api: httpx.Client, person: httpx.Client, alertmanager_url: str,
           seen_before: set[str], progress: Callable[[str], None]) -> ScenarioResult:
    expected = f"{sc.outcome}" + (f" {sc.entry}" if sc.entry else "")
    base = {"id": sc.id, "klass": sc.klass, "host": sc.host, "alert": sc.alert, "expected": expected}
    incident: dict[str, Any] | None = None
    seconds: float | None = None
    earlier: list[str] = []
    for n in range(sc.repeat):   # flapping: the same fault again once each earlier fix verified
        if n:
            wait_cleared(alertmanager_url, sc.alert, sc.host, timeout_s=60)
        started = time.monotonic()
        for argv in sc.inject:
            r = exec_on(host.container, argv)
            if r.returncode != 0:
                return ScenarioResult(**base, got="inject failed", right=False, worse=[], seconds=None, problems=[
                    f"inject {argv}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[:300]}"])
        if sc.fire:
            fire(alertmanager_url, sc.fire, minutes=10, description=f"scenario {sc.id}: {sc.title}")
        progress(f"fault injected on {sc.host} ({n + 1}/{sc.repeat}); waiting for {sc.alert}")
        incident = _settled(sc, api, seen_before | set(earlier), started, progress)
        seconds = round(time.monotonic() - started, 1)
        if incident is None:
            return ScenarioResult(**base, got="no incident", right=False, worse=_worse(sc, host, api, seen_before),
                                  seconds=None, problems=[f"no {sc.alert} incident for {sc.host} settled within "
                                                          f"{sc.timeout_s} s (round {n + 1})"])
        if n < sc.repeat - 1 and incident["state"] != IncidentState.RESOLVED.value:
            return ScenarioResult(**base, got=f"round {n + 1}: {incident['state']}", right=False, seconds=seconds,
                                  worse=_worse(sc, host, api, seen_before), incident=incident["id"],
                                  problems=[f"round {n + 1} of {sc.repeat} was not fixed: {incident['reason'][:300]}"])
        earlier.append(incident["id"])
    assert incident is not None
    proposal = incident.get("proposal") or {}
    got = f"{incident['state']}" + (f" {proposal['entry']}" if proposal.get("entry") else "")
    problems = _problems(sc, incident, host)
    if incident["state"] == IncidentState.AWAITING_APPROVAL.value:   # a person reads it and says no: the lab goes on
        reject(person, incident["id"], f"scenario {sc.id}: held as expected; the scenario ends here")
    worse = _worse(sc, host, api, seen_before)
    return ScenarioResult(**base, got=got, right=not problems and not worse, worse=worse, problems=problems,
                          seconds=seconds, fixed=incident["state"] == IncidentState.RESOLVED.value,
                          incident=incident["id"])


def _settled(sc: Scenario, api: httpx.Client, seen: set[str], started: float, progress: Callable[[str], None]
             ) -> dict[str, Any] | None:
    """The new incident for the scenario's alert and host once it is final or waits for a person (None: timed out)."""
    while time.monotonic() < started + sc.timeout_s:
        for row in read(api, "/incidents", limit=1000):
            if row["id"] in seen or row["alertname"] != sc.alert or row["host"] != sc.host:
                continue
            progress(f"incident {row['id']}: {row['state']}")
            if row["state"] in _SETTLED:
                return read(api, f"/incidents/{row['id']}")
        time.sleep(1)
    return None


def _problems(sc: Scenario, incident: dict[str, Any], host: LabHost) -> list[str]:
    """Why the answer is not the right one (empty: it is)."""
    problems = []
    proposal = incident.get("proposal") or {}
    want_state = _STATE_OF[sc.outcome]
    if incident["state"] != want_state:
        problems.append(f"state {incident['state']!r}, expected {want_state!r}: {incident['reason'][:300]}")
    if sc.entry is not None and proposal.get("entry") != sc.entry:
        problems.append(f"proposal {proposal.get('entry')!r}, expected {sc.entry!r}")
    for key, want in sc.params.items():
        if (proposal.get("params") or {}).get(key) != want:
            problems.append(f"parameter {key}={(proposal.get('params') or {}).get(key)!r}, expected {want!r}")
    report = incident.get("report") or {}
    said = " ".join([incident["reason"], proposal.get("rationale", ""), report.get("cause", ""),
                     report.get("look_first", "")]).casefold()
    problems += [f"the incident does not say {phrase!r}: {incident['reason'][:300]}"
                 for phrase in sc.says if phrase.casefold() not in said]
    if sc.outcome == "fixed":
        problems += [p for p in (probe(host.container, pr) for pr in sc.fixed) if p]
    return problems


def _worse(sc: Scenario, host: LabHost, api: httpx.Client, seen_before: set[str]) -> list[str]:
    """How remediator made this incident worse: every incident it opened since the fault counts, not only the one
    the scenario waited for; and the host's own word (the `unharmed` probes)."""
    details = [read(api, f"/incidents/{row['id']}") for row in read(api, "/incidents", limit=1000)
               if row["id"] not in seen_before]
    allowed = sc.repeat - 1 + (sc.outcome == "fixed")
    return made_worse(sc.host, details, allowed) + [f"harmed: {p}" for p in (probe(host.container, pr) for pr in sc.unharmed) if p]


def made_worse(host: str, incidents: list[dict[str, Any]], allowed: int = 1) -> list[str]:
    """What the real runs of these incidents (as the API shows them) did that makes an incident on `host` worse: a run
    on another host, a run that failed, more real runs than the scenario's fixes (at least one: a loop)."""
    worse = []
    applies = []
    for detail in incidents:
        runs = [r for r in detail["runs"] if r["mode"] == "apply"]
        applies += runs
        for r in runs:
            if any(h != host for h in r["hosts"]):
                worse.append(f"incident {detail['id']} ran {r['entry']} on {', '.join(r['hosts'])}, not only {host}")
            if r["status"] != RunStatus.SUCCESSFUL.value:
                worse.append(f"incident {detail['id']}'s real run of {r['entry']} {r['status']}: {r['summary'][:200]}")
    if len(applies) > max(1, allowed):
        worse.append(f"{len(applies)} real runs ({', '.join(r['entry'] for r in applies)}): a loop, not a fix")
    return worse


def _recovers(sc: Scenario, host: LabHost, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(probe(host.container, pr) for pr in sc.recovered):
            return True
        time.sleep(1)
    return False


def summarize(results: list[ScenarioResult]) -> Summary:
    """Handled right (%), made worse (count), fault -> final state: median, per class, and the fixes' own."""
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None
    by_class: dict[str, ClassFigures] = {}
    for klass in dict.fromkeys(r.klass for r in results):
        of = [r for r in results if r.klass == klass]
        by_class[klass] = ClassFigures(scenarios=len(of), right=sum(r.right for r in of),
                                       median_s=median([r.seconds for r in of if r.seconds is not None]))
    right = sum(r.right for r in results)
    return Summary(scenarios=len(results), right=right, right_pct=round(100 * right / len(results), 1) if results else 0.0,
                   worse=sum(bool(r.worse) for r in results),
                   median_s=median([r.seconds for r in results if r.seconds is not None]),
                   fixed_median_s=median([r.seconds for r in results if r.fixed and r.seconds is not None]),
                   by_class=by_class)


def run_scenarios(settings: Settings, catalog: Catalog, server: Server, only: str | None = None,
                  progress: Callable[[str, str], None] = lambda _s, _m: None, record: Path | None = None
                  ) -> list[ScenarioResult]:
    """Every scenario (or `only`), one after another, against the lab; the lab's monitoring must be up. `record`:
    each scenario handled right is written there as the eval case lab-<id> (remediator/engine/lab/recording.py)."""
    monitoring = Monitoring.for_lab(settings)
    if not all(m.running for m in monitoring.status()):
        raise ConfigError("the lab's Prometheus and Alertmanager are not running: run `remediator lab up` first")
    scenarios = load_scenarios(catalog, only=only)
    hosts = {h.name: h for h in lab_hosts(settings.inventory)}
    if unknown := sorted({s.host for s in scenarios} - set(hosts)):
        raise ConfigError(f"scenarios name hosts that are not lab hosts: {', '.join(unknown)}")
    # Held scenarios end as a person would end them: a rejection, with an approver's token made for this run.
    store = Store(settings.db_url, settings.sqlite_synchronous)
    identities = Identities(store, [])
    name_ = f"scenario-person-{secrets.token_hex(3)}"
    _, token = identities.add(name_, "approver")
    results = []
    try:
        with server.client() as api, server.client(token) as person:
            for sc in scenarios:
                try:
                    result = run_scenario(sc, hosts[sc.host], api, person, monitoring.url("alertmanager"),
                                          progress=functools.partial(progress, sc.id))
                    if record is not None and result.right and result.incident:
                        progress(sc.id, f"recorded as {record_case(store, sc, result.incident, record)}")
                except Exception as exc:   # the judge failed, not remediator: say so, and the rest still run
                    result = ScenarioResult(id=sc.id, klass=sc.klass, host=sc.host, alert=sc.alert, expected=sc.outcome,
                                            got="not judged", right=False, worse=[], seconds=None,
                                            problems=[f"the scenario run itself failed: {type(exc).__name__}: {exc}"])
                results.append(result)
                progress(sc.id, "right" if result.right else ("MADE WORSE" if result.worse else "wrong"))
                _settle(sc, monitoring.url("alertmanager"))
    finally:
        identities.remove(name_)
    return results


def _settle(sc: Scenario, alertmanager_url: str) -> None:
    """Wait until Alertmanager no longer shows the scenario's alert as active, so the next one starts clean."""
    wait_cleared(alertmanager_url, sc.alert, sc.host, timeout_s=60)


def report_markdown(results: list[ScenarioResult], summary: Summary) -> str:
    rows = ["| scenario | class | host | alert | expected | got | fault → final | result |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        verdict = "right" if r.right else ("MADE WORSE: " + "; ".join(r.worse) if r.worse else "wrong: " + "; ".join(r.problems))
        secs = f"{r.seconds:.1f} s" if r.seconds is not None else "-"
        rows.append(f"| {r.id} | {r.klass} | {r.host} | {r.alert} | {r.expected} | {r.got} | {secs} | {verdict} |")
    rows += ["", f"handled right: {summary.right}/{summary.scenarios} ({summary.right_pct} %); made worse: "
             f"{summary.worse}; fault → final state, median: {summary.median_s} s; automatic fixes, fault → verified, "
             f"median: {summary.fixed_median_s} s", "", "| class | scenarios | right | median fault → final |",
             "|---|---|---|---|"]
    rows += [f"| {k} | {c.scenarios} | {c.right} | {c.median_s} s |" for k, c in summary.by_class.items()]
    return "\n".join(rows) + "\n"


def write_report(results: list[ScenarioResult], directory: Path) -> tuple[Path, Summary]:
    """report.json (results and summary) and report.md; returns the Markdown's path and the summary."""
    summary = summarize(results)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(
        {"summary": summary.model_dump(), "results": [r.model_dump() for r in results]}, indent=2))
    (directory / "report.md").write_text(report_markdown(results, summary))
    return directory / "report.md", summary
