"""A scenario's incident, recorded as an eval case (`remediator scenarios run --record DIR`).

What the engine was shown in the lab becomes a case `remediator eval` replays offline, for either planner: the
webhook as Alertmanager posted it, the evidence as the incident stored it (each diagnostic's report per question,
what Prometheus answered each report), the real runs of the hour before (rate limits, flapping), and the answer the
scenario calls right. Nothing is written by hand: a recorded case is the lab's own word.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import select

from remediator.engine.decide.evidence import METRIC, entry_of
from remediator.engine.model.states import IncidentState, RunMode
from remediator.engine.store.db import Store
from remediator.engine.store.tables import AlertRow, Delivery, Incident, Run

if TYPE_CHECKING:
    from remediator.engine.lab.scenarios import Scenario

__all__ = ["record_case", "PREFIX"]

#: a recorded case's folder is the scenario's id after this (the eval's --only lab- picks them all)
PREFIX = "lab-"
_VERDICT = {"fixed": "allow", "held": "approve"}
_NOT_ENTRIES = {"prometheus", "_planner"}   # gather()'s own keys: the alert's series, an unvalidated proposal


def record_case(store: Store, sc: Scenario, incident_id: str, cases_dir: Path) -> Path:
    """Write the scenario's settled incident as the eval case `lab-<id>` under `cases_dir`; returns its folder."""
    with store.read() as session:
        inc = session.get(Incident, incident_id)
        if inc is None:
            raise LookupError(f"no incident {incident_id}")
        first = session.execute(select(AlertRow).where(AlertRow.incident_id == incident_id).order_by(AlertRow.id)
                                ).scalars().first()
        delivery = session.get(Delivery, first.delivery_id) if first is not None else None
        if first is None or delivery is None:
            raise LookupError(f"incident {incident_id} keeps no webhook to record")
        payload = {**delivery.body, "alerts": [a for a in delivery.body.get("alerts", [])
                                                if a.get("fingerprint") == first.fingerprint][:1]}
        at = inc.created_at.replace(tzinfo=UTC)
        evidence = dict(inc.evidence or {})
        report = inc.report
        runs = session.execute(select(Run, Incident.state).join(Incident, Run.incident_id == Incident.id).where(
            Run.mode == RunMode.APPLY, Run.started_at >= inc.created_at - timedelta(hours=1),
            Run.started_at < inc.created_at).order_by(Run.started_at)).all()
        history = {"at": at.isoformat(), "runs": [
            {"entry": r.entry, "hosts": list(r.hosts), "params": dict(r.params),
             "minutes_ago": round((inc.created_at - r.started_at).total_seconds() / 60, 2),
             "verified": state == IncidentState.RESOLVED.value} for r, state in runs]}

    folder = cases_dir / f"{PREFIX}{sc.id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alert.json").write_text(json.dumps(payload, indent=2) + "\n")
    (folder / "evidence.json").write_text(json.dumps(evidence, indent=2, default=str) + "\n")
    (folder / "history.yml").write_text(_yaml(f"recorded {datetime.now(UTC):%Y-%m-%d %H:%M}Z: the real runs of the "
                                              "hour before the incident", history))
    read = list(dict.fromkeys(entry_of(k) for k, v in evidence.items()
                              if k not in _NOT_ENTRIES and not k.startswith(METRIC) and (v or {}).get("report") is not None))
    expected: dict[str, Any] = {"entry": sc.entry or "escalate"}
    if sc.params:
        expected["params"] = dict(sc.params)
    if sc.outcome in _VERDICT:
        expected["verdict"] = _VERDICT[sc.outcome]
    if read:
        expected["evidence"] = read
    if report is not None:
        expected["cause"] = report.cause
    expected["note"] = sc.title
    (folder / "expected.yml").write_text(_yaml(f"lab scenario {sc.id} ({sc.klass}), as the lab judged it right",
                                               expected))
    return folder


def _yaml(comment: str, data: dict[str, Any]) -> str:
    return f"# {comment} (remediator scenarios run --record)\n---\n" + yaml.safe_dump(data, sort_keys=False,
                                                                                     allow_unicode=True, width=120)
