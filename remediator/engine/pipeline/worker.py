"""The workers: threads that claim incidents from the store and hand them to the steps (steps.py).

A worker claims the most urgent incident whose host has nothing else in flight (one remediation per
host at a time, whichever entry, across every replica: the claim writes the host's lease, remediator/engine/store/
leases.py), and `workers` bounds how many run at once here. A lease is renewed while its incident is worked; a
replica that cannot renew stops its workers (fenced) before its leases expire. take_over() recovers an incident
whose lease expired (its replica died) or, at a start, every held one on SQLite: it requeues what had not run yet
and marks what was cut off (never re-run blindly). The states and their moves are remediator/engine/model/states.py.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from remediator.engine.catalog.inventory import Inventory
from remediator.engine.catalog.loader import Catalog
from remediator.engine.decide import blast
from remediator.engine.decide.decision import Clock, StoreHistory, metrics_query, system_clock
from remediator.engine.decide.planners import Planner
from remediator.engine.decide.policy import Policy
from remediator.engine.decide.reports import Query
from remediator.engine.errors import LeaseLost, StoreUnavailable
from remediator.engine.model.states import HELD_STATES, IncidentState, RunMode, RunState
from remediator.engine.outbound.metrics import Metrics
from remediator.engine.outbound.prometheus import Prometheus
from remediator.engine.pipeline.records import Records
from remediator.engine.pipeline.steps import ShuttingDown, Steps
from remediator.engine.run.runner import Executor
from remediator.engine.settings import Settings
from remediator.engine.store import audit, leases
from remediator.engine.store.db import Store
from remediator.engine.store.lifecycle import Lifecycle
from remediator.engine.store.tables import Incident, Run, utcnow

__all__ = ["Pipeline"]


log = logging.getLogger(__name__)

#: Before the real run nothing has changed on a host, so after a crash these are simply worked again.
_CLAIMABLE = [IncidentState.RECEIVED.value, IncidentState.APPROVED.value]
_REQUEUE_ON_START = {IncidentState.DIAGNOSING, IncidentState.PLANNED, IncidentState.CHECKING}


class Pipeline:
    def __init__(self, *, settings: Settings, store: Store, catalog: Catalog, inventory: Inventory, planner: Planner,
                 policy: Policy, executor: Executor, metrics: Metrics, lifecycle: Lifecycle,
                 clock: Clock = system_clock, query: Query | None = None):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.inventory = inventory
        self.planner = planner
        self.policy = policy
        self.executor = executor
        self.metrics = metrics
        self.limits = settings.section(blast.Limits)
        self.lifecycle = lifecycle
        self.clock = clock
        self.history = StoreHistory(store)
        self.prometheus = Prometheus(settings.prometheus_url, settings.prometheus_query_timeout_s,
                                     external_url=settings.prometheus_external_url) if settings.prometheus_url else None
        self.query = query or metrics_query(self.prometheus)    # what Level 2 reports ask Prometheus
        self._stop = threading.Event()
        self._cancel = threading.Event()     # handed to every ansible-runner run: set on shutdown
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.owner = leases.replica_name()   # whose leases these are
        self._working: set[str] = set()      # incidents this replica's workers hold now
        self._closing = threading.Event()    # stop() was called (not a fence)
        self._keeper: threading.Thread | None = None
        self.fenced = ""                     # why the workers are stopped while the store is out of reach
        self.records = Records(store, lifecycle, metrics)
        self.steps = Steps(settings=settings, store=store, catalog=catalog, planner=planner, policy=policy,
                           executor=executor, records=self.records, lifecycle=lifecycle, history=self.history,
                           clock=clock, prometheus=self.prometheus, query=self.query, cancel=self._cancel, stopping=self._stop)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._closing.clear()
        self._start_workers()
        self._keeper = threading.Thread(target=self._keep_leases, name="lease-keeper", daemon=True)
        self._keeper.start()

    def _start_workers(self) -> None:
        self._stop.clear()
        self._cancel.clear()
        for n in range(self.settings.workers):
            t = threading.Thread(target=self._loop, name=f"worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 30) -> None:
        """Stop taking work, cancel runs in flight, wait for the workers."""
        self._closing.set()
        self._stop_workers(timeout_s)
        if self._keeper is not None:
            self._keeper.join(timeout_s)

    def _stop_workers(self, timeout_s: float = 30) -> None:
        self._stop.set()
        self._cancel.set()
        self.wake()
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def wake(self) -> None:
        """New work is in the store (intake or an approval): stop waiting."""
        with self._wake:
            self._wake.notify_all()

    def recover(self) -> None:
        """At a start: on SQLite (the only replica) every held incident is this store's to recover; on PostgreSQL
        only those whose lease expired (the others are live replicas' work)."""
        self.take_over(every_held=self.store.is_sqlite)

    def take_over(self, *, every_held: bool = False) -> list[str]:
        """Recover held incidents that no live lease covers: requeue what had not run yet, mark what was cut off; the
        incidents recovered. Expired leases go.

        A real run that was cut off may have changed the host: the incident is worked again from the start
        (diagnose, plan, policy, check mode) and a person decides before it runs again. A cut-off verify is simply
        verified again."""
        taken: list[str] = []
        with self.store.write() as session:
            audit.lock(session)   # among replicas one at a time, and what they committed is what is read below
            live = set() if every_held else leases.live_incidents(session)
            held = select(Incident).where(Incident.state.in_([s.value for s in HELD_STATES]))
            for inc in session.execute(held.with_for_update(skip_locked=True)).scalars():
                if inc.id in live:
                    continue
                taken.append(inc.id)
                if IncidentState(inc.state) in _REQUEUE_ON_START:
                    self.lifecycle.move(session, inc, IncidentState.RECEIVED, "remediator restarted before the real run; worked again",
                                         event="incident.requeued")
                    continue
                step = RunMode.APPLY if inc.state == IncidentState.EXECUTING else RunMode.VERIFY
                cut = session.execute(select(Run).where(Run.incident_id == inc.id, Run.status == RunState.RUNNING)).scalars().all()
                for run in cut:
                    run.status, run.finished_at = RunState.INTERRUPTED, utcnow()
                inc.interrupted = step
                reason = (f"remediator restarted during the real run of {inc.entry} on {inc.host}, which may have changed "
                          f"it: diagnosed and checked again, and a person decides before it runs again" if step == RunMode.APPLY
                          else f"remediator restarted while verifying {inc.entry} on {inc.host}: verifying again")
                self.lifecycle.move(session, inc, IncidentState.RECEIVED, reason, event="incident.interrupted",
                                     data={"step": step, "runs": [r.ident for r in cut]})
            gone = delete(leases.Lease)
            if not every_held:
                gone = gone.where(leases.Lease.incident_id.in_(taken) | (leases.Lease.expires_at <= leases.db_now(session)))
            session.execute(gone)
        return taken

    # ---- the leases ------------------------------------------------------------------------

    def _keep_leases(self) -> None:
        """Renew this replica's leases; fence the workers when that fails for half a lease, or a lease was taken."""
        ttl = self.settings.lease_ttl_s
        renewed = time.monotonic()
        while not self._closing.wait(ttl / 4):
            try:
                still = leases.renew(self.store, self.owner, ttl)
            except Exception as exc:   # StoreUnavailable, or the connection itself refused
                if not self.fenced and time.monotonic() - renewed > ttl / 2:
                    self._fence(f"cannot renew its leases for {time.monotonic() - renewed:.0f} s ({exc})")
                continue
            renewed = time.monotonic()
            lost = self._working - still
            if lost and not self.fenced:
                self._fence(f"another replica took over incident(s) {', '.join(sorted(lost))}")
            elif self.fenced and not self._closing.is_set():
                log.warning("the store answers again: workers start (were fenced: %s)", self.fenced)
                self.fenced = ""
                self._start_workers()

    def _fence(self, why: str) -> None:
        """Stop every run here before another replica may take the hosts over: a host is never worked twice."""
        log.error("workers stopped: %s", why)
        self.fenced = why
        self._stop_workers()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                incident_id = self.claim()
            except StoreUnavailable as exc:
                log.warning("cannot claim work: %s", exc.message)
                incident_id = None
            except Exception:   # a bug must not end the worker
                log.exception("claiming failed")
                incident_id = None
            if incident_id is None:
                with self._wake:
                    self._wake.wait(timeout=1.0)
                continue
            self.work(incident_id)

    # ---- claiming --------------------------------------------------------------------------

    def claim(self) -> str | None:
        """Take the most urgent incident whose host is free and not paused, and the host's lease; None when there is
        nothing to do."""
        with self.store.read() as session:   # most wake-ups find nothing: don't queue for the write lock then
            if session.execute(select(Incident.id).where(Incident.state.in_(_CLAIMABLE)).limit(1)).first() is None:
                return None
        with self.store.write() as session:
            audit.lock(session)   # claims take turns across replicas: each reads what the last one committed
            paused = {p.scope for p in leases.pauses(session)}
            if leases.ALL in paused:
                return None
            busy = {h for (h,) in session.execute(select(Incident.host).where(
                Incident.state.in_([s.value for s in HELD_STATES]), Incident.host.is_not(None))).all()}
            now = leases.db_now(session)   # leases are judged on the database's clock, the same for every replica
            busy |= set(session.execute(select(leases.Lease.key).where(leases.Lease.expires_at > now)).scalars())
            busy |= {h for h, groups in self.inventory.hosts.items() if h in paused or paused.intersection(groups)}
            room = blast.busy_hosts(session, self.limits, self.inventory)   # the budget and the caps
            if room is None:
                return None
            busy |= room
            approved_hosts = {h for (h,) in session.execute(select(Incident.host).where(
                Incident.state == IncidentState.APPROVED, Incident.host.is_not(None))).all()}
            # The busy hosts are left out in the query itself: however many incidents wait on a held host,
            # the first row is always one a worker can take (no starving a free host behind them).
            q = select(Incident).where(Incident.state.in_(_CLAIMABLE),
                                       or_(Incident.not_before.is_(None), Incident.not_before <= utcnow()))
            if busy:
                q = q.where(or_(Incident.host.is_(None), Incident.host.not_in(busy)))
            if approved_hosts:   # an approved run on a host goes before new work on it
                q = q.where(or_(Incident.state == IncidentState.APPROVED, Incident.host.is_(None),
                                Incident.host.not_in(approved_hosts)))
            q = q.order_by(Incident.priority, Incident.created_at).limit(1).with_for_update(skip_locked=True)
            inc = session.execute(q).scalar_one_or_none()
            if inc is None:
                return None
            inc = self._cause_first(session, inc)
            key = leases.lease_key(inc.host, inc.id)
            session.execute(delete(leases.Lease).where(leases.Lease.key == key))   # expired: its owner is gone
            session.add(leases.Lease(key=key, incident_id=inc.id, owner=self.owner,
                                     claimed_at=now, expires_at=now + timedelta(seconds=self.settings.lease_ttl_s)))
            nxt = IncidentState.DIAGNOSING if inc.state == IncidentState.RECEIVED else IncidentState.CHECKING
            inc.claimed_at, inc.not_before = now, None
            inc.attempts += 1
            self.records.braked(session, self.settings, inc, blast.brake(session, self.limits, self.inventory, inc))
            self.lifecycle.move(session, inc, nxt, event="incident.claimed", data={"state": nxt.value, "by": self.owner})
            claimed = inc.id
        self._working.add(claimed)   # committed: the lease is ours
        return claimed

    def _cause_first(self, session: Session, inc: Incident) -> Incident:
        """Of the new alerts waiting on the chosen incident's host, the one its runbooks order first (a full disk
        before the service it stopped); the most urgent, then the oldest, among equals. An approved run stays first."""
        if inc.host is None or inc.state != IncidentState.RECEIVED:
            return inc
        waiting = session.execute(select(Incident).where(
            Incident.state == IncidentState.RECEIVED, Incident.host == inc.host,
            or_(Incident.not_before.is_(None), Incident.not_before <= utcnow())).with_for_update(skip_locked=True)).scalars()
        return min(waiting, key=lambda i: (self.planner.work_order(i.alertname, i.labels), i.priority, i.created_at),
                   default=inc)

    # ---- the steps -------------------------------------------------------------------------

    def work(self, incident_id: str) -> None:
        """Run one claimed incident as far as it goes now, then give its host's lease back; never raises."""
        try:
            self._work(incident_id)
        finally:
            self._working.discard(incident_id)   # first: the lease keeper must not see its own release as a loss
            try:
                leases.release(self.store, self.owner, incident_id)
            except Exception as exc:   # it expires; take_over() clears it
                log.warning("incident %s: could not give the lease back: %s", incident_id, exc)

    def _work(self, incident_id: str) -> None:
        try:
            with self.store.read() as session:
                inc = session.get(Incident, incident_id)
            if inc is None:
                return
            with leases.fencing(self.owner, incident_id):   # every write below checks the lease is still ours
                if inc.state == IncidentState.DIAGNOSING:
                    self.steps.from_received(inc)
                elif inc.state == IncidentState.CHECKING:
                    self.steps.after_approval(inc)
        except ShuttingDown:     # a run was cancelled by a stop: the incident stays where it is, for recover()
            log.info("incident %s: left for the next start (shutting down)", incident_id)
        except LeaseLost as exc:   # another replica works it now: write nothing more
            log.error("%s", exc.message)
        except Exception as exc:   # a bug or an outage must not leave the incident (and its host) held
            log.exception("incident %s: internal error", incident_id)
            try:
                with self.store.write() as session:
                    inc = session.get(Incident, incident_id)
                    if inc is not None and IncidentState(inc.state) in HELD_STATES:
                        self.lifecycle.close(session, inc, IncidentState.ESCALATED,
                                    f"remediator hit an internal error ({type(exc).__name__}: {exc}); a person must look")
            except Exception:
                log.exception("incident %s: could not record the error", incident_id)
