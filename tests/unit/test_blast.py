"""Blast radius (remediator/engine/decide/blast.py): the disruption budget and the caps hold at the claim, across
racing replicas too; a storm brakes a group, or an alert firing in two regions, once (one page) and until an admin
resets it; the wave rule keeps an entry out of a second region until it verified and baked in the first; a held-back
incident is not claimed before its time; one region per action; and a flood on one host never starves a free one."""
import subprocess
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from remediator.engine import PROJECT_ROOT
from remediator.engine.decide import blast, breaker
from remediator.engine.decide.decision import Situation, judge
from remediator.engine.model.records import ActionProposal, Verdict
from remediator.engine.model.states import IncidentState
from remediator.engine.people.identities import Identity, Role
from remediator.engine.service import Engine
from remediator.engine.settings import Settings
from remediator.engine.store.tables import BreakerRow, Incident, OutboxMessage, Run, utcnow
from tests.engines import new_engine
from tests.unit.test_replicas import _add, _host, _replica

pytestmark = [pytest.mark.unit, pytest.mark.store]


def _engine(tmp_path, url, **settings) -> Engine:
    return new_engine(Settings(data_dir=tmp_path, database_url=url, webhook_url="http://127.0.0.1:9/hook", **settings))


def _claim_all(engine: Engine) -> list[str]:
    out = []
    while (got := engine.pipeline.claim()) is not None:
        out.append(got)
    return out


def test_the_group_budget_and_the_global_cap_hold_at_the_claim(tmp_path, database_url):
    engine = _engine(tmp_path, database_url, budget_per_group=1, brake_hosts=50)
    for host in ("app-server-01", "app-server-02", "api-server-01", "db-primary-01"):
        _add(engine, 2, host)
    hosts = [_host(engine, i) for i in _claim_all(engine)]
    # app: one of its two hosts; then api-server-01 and db-primary-01 (the regions' caps leave room)
    assert len(hosts) == 3 and len({"app-server-01", "app-server-02"} & set(hosts)) == 1
    capped = _engine(tmp_path / "capped", None, cap_global=2, brake_hosts=50)
    for host in ("app-server-01", "api-server-01", "db-primary-01"):
        _add(capped, 1, host)
    assert len(_claim_all(capped)) == 2


def test_incidents_show_says_which_budget_or_cap_an_incident_waits_for(tmp_path):
    engine = _engine(tmp_path, None, budget_per_group=1, brake_hosts=50)
    _add(engine, 1, "app-server-01", name="first")
    (waiting,) = _add(engine, 1, "app-server-02", name="second")
    assert engine.pipeline.claim() is not None and engine.pipeline.claim() is None
    with engine.store.read() as s:
        assert blast.waiting(s, engine.settings.section(blast.Limits), engine.inventory, "app-server-02") == \
            "1 hosts of app are being worked on (budget_per_group 1)"
        assert "app-server-01 is being worked on by another incident" in blast.waiting(s, engine.settings.section(blast.Limits),
                                                                                       engine.inventory, "app-server-01")
        assert blast.waiting(s, engine.settings.section(blast.Limits), engine.inventory, "api-server-01") == ""
    env = {"PATH": "/usr/bin:/bin", "REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_BUDGET_PER_GROUP": "1",
           "COLUMNS": "200"}
    shown = subprocess.run([str(PROJECT_ROOT / ".venv/bin/remediator"), "incidents", "show", waiting], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "waiting: 1 hosts of app are being worked on (budget_per_group 1); it is claimed when there is room" in shown.stdout


def test_racing_replicas_never_pass_the_budget(tmp_path, postgres_url):
    a, b = (_replica(tmp_path, postgres_url, n, budget_per_group=1, cap_per_region=1, brake_hosts=50) for n in "ab")
    for host in ("app-server-01", "app-server-02", "api-server-01", "db-primary-01"):
        _add(a, 5, host)
    claimed: list[str] = []
    go = threading.Barrier(6)

    def claim(engine: Engine) -> None:
        go.wait()
        for _ in range(5):
            if (got := engine.pipeline.claim()) is not None:
                claimed.append(got)

    threads = [threading.Thread(target=claim, args=((a, b)[n % 2],)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hosts = {_host(a, i) for i in claimed}
    inventory = a.inventory
    # one host per region (cap_per_region 1), and so at most one of app (budget 1)
    assert len(claimed) == 2 and {blast.region_of(inventory, h) for h in hosts} == {"region_east", "region_west"}


def test_a_storm_in_a_group_brakes_it_once_and_every_action_there_waits_for_a_person(tmp_path, database_url):
    engine = _engine(tmp_path, database_url, brake_hosts=1, brake_percent=10)
    _add(engine, 1, "app-server-01", name="a")
    _add(engine, 1, "app-server-02", name="b")     # 2 of app's 2 hosts alert: more than max(1, 10 %)
    first = engine.pipeline.claim()
    engine.pipeline.claim()
    with engine.store.read() as s:
        row = s.get(BreakerRow, "brake:app")
        pages = s.execute(select(OutboxMessage).where(OutboxMessage.event == "breaker_open")).scalars().all()
    assert row is not None and row.open and "2 of the 2 hosts of app are alerting" in row.reason
    assert [p.payload["dedup_key"] for p in pages] == ["breaker:brake:app"]     # told once (one channel here)
    situation = Situation(alertname="a", labels={}, annotations={}, host="app-server-01", severity="critical",
                          ref=first)
    plan = ActionProposal(entry="restart_service", params={"unit": "webapp", "reason": "storm"}, hosts=["app-server-01"],
                          rationale="t", planner="runbook", offered=["restart_service"])
    verdict, _ = judge(situation, plan, catalog=engine.catalog, policy=engine.policy, history=engine.pipeline.history)
    assert verdict.verdict == Verdict.APPROVE and any("storm brake" in r for r in verdict.reasons), verdict
    admin = Identity(name="oncall", role=Role.ADMIN, approver_id="a1")
    breaker.reset(engine.store, admin, "brake:app")
    _add(engine, 1, "app-server-01", name="c")
    with engine.store.write() as s:   # the storm goes on, but a person judged it: no second brake in the window
        s.execute(update(Incident).where(Incident.alertname.in_(["a", "b"])).values(state=IncidentState.RESOLVED))
    engine.pipeline.take_over(every_held=True)
    assert engine.pipeline.claim() is not None
    with engine.store.read() as s:
        assert not s.get(BreakerRow, "brake:app").open


def test_one_alert_in_two_regions_brakes_that_alert(tmp_path, database_url):
    engine = _engine(tmp_path, database_url, brake_hosts=50)
    (east,) = _add(engine, 1, "app-server-01", name="ServiceDown")    # region_east
    _add(engine, 1, "api-server-01", name="ServiceDown")    # region_west
    with engine.store.write() as s:   # east's evidence showed the fault: it was planned
        s.execute(update(Incident).where(Incident.id == east).values(entry="restart_service",
                                                                     state=IncidentState.PLANNED))
    assert engine.pipeline.claim() is not None
    with engine.store.read() as s:
        row = s.get(BreakerRow, "brake:alert:servicedown")   # the name in any case
    assert row is not None and row.open and "fires in 2 regions (region_east, region_west)" in row.reason


@pytest.mark.security
def test_alerts_posted_on_healthy_hosts_in_two_regions_do_not_brake_that_alert(tmp_path, database_url):
    """N12 of the second review: two posted alerts (app-server-01 east, api-server-01 west) opened
    `brake:alert:<name>` fleet-wide, so one sender turned that alert's automation off until an admin came. Elsewhere,
    only an incident whose evidence showed the fault (it was planned) counts now."""
    engine = _engine(tmp_path, database_url, brake_hosts=50)
    (east,) = _add(engine, 1, "app-server-01", name="ServiceDown")
    _add(engine, 1, "api-server-01", name="ServiceDown")
    with engine.store.write() as s:   # east's gate read a healthy unit: escalated, nothing planned
        s.execute(update(Incident).where(Incident.id == east).values(state=IncidentState.ESCALATED))
    assert engine.pipeline.claim() is not None
    with engine.store.read() as s:
        assert s.get(BreakerRow, "brake:alert:servicedown") is None


def _applied(engine: Engine, host: str, state: IncidentState, closed_ago_s: float | None) -> None:
    (incident_id,) = _add(engine, 1, host, state, name=f"w{state[:4]}")
    with engine.store.write() as s:
        inc = s.get(Incident, incident_id)
        inc.entry = "restart_service"
        inc.closed_at = utcnow() - timedelta(seconds=closed_ago_s) if closed_ago_s is not None else None
        s.add(Run(incident_id=incident_id, ident=f"{incident_id}-a1-apply", entry="restart_service", mode="apply",
                  hosts=[host], params={}, status="successful", started_at=utcnow() - timedelta(seconds=60)))


def _hold(engine: Engine, host: str) -> str:
    with engine.store.read() as s:
        return blast.hold(s, engine.settings.section(blast.Limits), engine.inventory, "restart_service", [host])


def test_the_wave_rule_keeps_an_entry_out_of_a_second_region_until_it_verified_and_baked(tmp_path, database_url):
    engine = _engine(tmp_path, database_url, wave_bake_s=300)
    _applied(engine, "app-server-01", IncidentState.EXECUTING, None)            # running in region_east
    assert "running in region_east and has not verified yet" in _hold(engine, "app-server-02")
    assert _hold(engine, "db-primary-01") == ""                                   # the same region may go on
    with engine.store.write() as s:
        s.execute(update(Incident).where(Incident.host == "app-server-01").values(
            state=IncidentState.RESOLVED, closed_at=utcnow() - timedelta(seconds=10)))
    assert "waits for its bake time (300 s)" in _hold(engine, "app-server-02")
    with engine.store.write() as s:
        s.execute(update(Incident).where(Incident.host == "app-server-01").values(closed_at=utcnow() - timedelta(seconds=301)))
    assert _hold(engine, "app-server-02") == ""
    with engine.store.read() as s:
        assert blast.unverified_elsewhere(s, engine.settings.section(blast.Limits), engine.inventory, "restart_service",
                                          ["app-server-02"]) == ""
    _applied(engine, "app-server-01", IncidentState.FAILED, 5)                  # the next run in the east failed
    with engine.store.read() as s:
        why = blast.unverified_elsewhere(s, engine.settings.section(blast.Limits), engine.inventory, "restart_service", ["app-server-02"])
    assert "did not verify (it ended failed); a person decides" in why and _hold(engine, "app-server-02") == ""


def test_the_wave_rule_sees_an_incident_moved_to_executing_before_its_run_row_is_written(tmp_path, database_url):
    """A worker moves its incident to executing, commits, then writes the run row: a second worker in between (found
    in CI once runs took under a second) saw no run in the other region and ran in both at once."""
    engine = _engine(tmp_path, database_url, wave_bake_s=300)
    (east,) = _add(engine, 1, "app-server-01", name="moving")
    with engine.store.write() as s:
        inc = s.get(Incident, east)
        inc.entry, inc.state = "restart_service", IncidentState.EXECUTING   # no Run row yet
    assert "running in region_east and has not verified yet" in _hold(engine, "app-server-02")
    assert _hold(engine, "db-primary-01") == ""


def test_the_entry_cap_holds_a_real_run_and_a_held_incident_waits_its_time(tmp_path, database_url):
    engine = _engine(tmp_path, database_url, cap_per_entry=1)
    _applied(engine, "db-primary-01", IncidentState.EXECUTING, None)
    assert "1 real runs of restart_service are in flight (cap_per_entry 1)" in _hold(engine, "db-primary-01")
    (waiting,) = _add(engine, 1, "api-server-01", name="held")
    with engine.store.write() as s:
        s.get(Incident, waiting).not_before = utcnow() + timedelta(seconds=30)
    assert engine.pipeline.claim() is None
    with engine.store.write() as s:
        s.get(Incident, waiting).not_before = utcnow() - timedelta(seconds=1)
    assert engine.pipeline.claim() == waiting


def test_an_empty_or_two_region_target_runs_nothing(tmp_path, database_url):
    engine = _engine(tmp_path, database_url)
    assert "names no host" in blast.target_problem(engine.inventory, [])
    assert "spans regions (region_east, region_west)" in blast.target_problem(engine.inventory,
                                                                               ["app-server-01", "app-server-02"])
    assert blast.target_problem(engine.inventory, ["app-server-01", "db-primary-01"]) == ""
    situation = Situation(alertname="x", labels={}, annotations={}, host="app-server-01", severity="critical", ref="r")
    plan = ActionProposal(entry="restart_service", params={"unit": "webapp", "reason": "x"}, hosts=["app-server-01", "api-server-01"],
                          rationale="t", planner="runbook",
                          offered=["restart_service"])
    verdict, _ = judge(situation, plan, catalog=engine.catalog, policy=engine.policy, history=engine.pipeline.history)
    assert verdict.verdict == Verdict.DENY   # (policy's own scope rule says no first; one-region is the backstop)


def test_a_free_host_is_claimed_by_another_replica_while_a_busy_one_has_200_queued(tmp_path, postgres_url):
    a, b = (_replica(tmp_path, postgres_url, n, brake_hosts=500) for n in "ab")
    _add(a, 1, "app-server-01", IncidentState.CHECKING, name="busy")
    _add(a, 200, "app-server-01", name="flood")
    (lone,) = _add(a, 1, "api-server-01", name="lone")
    with a.store.write() as s:
        s.execute(update(Incident).where(Incident.id == lone).values(priority=4))   # the least urgent, and the last
    assert b.pipeline.claim() == lone
