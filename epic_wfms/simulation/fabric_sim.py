"""A discrete-event simulation (own heapq event loop) of a campaign plus a live STF stream.

The fabric is the site catalogue; every placement is made by the real ``Broker`` (campaign
jobs) and ``ButterflyBalancer`` (STFs). Queues run jobs by fair share over time (express
first), sites fail jobs at a small rate, outages of a site or a link can be scheduled. The
report gives utilisation per site, share fairness, time to complete, STF accounting (none
may be lost) and what each outage did.
"""

from __future__ import annotations

import heapq
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from epic_wfms.brokerage import ASSIGNED, Broker, ButterflyBalancer, Fabric, FabricState
from epic_wfms.errors import ConfigurationError
from epic_wfms.simulation.workload import SimJob, Workload
from epic_wfms.sites import Catalogue

HOUR = 3600.0
# event kinds
_END, _STF, _TICK, _HEALTH, _OUTAGE_START, _OUTAGE_END = range(6)


@dataclass(frozen=True)
class Outage:
    """A site (``E1_BNL``) or a link (``E1_BNL~E1_JLAB``) down from ``start_s`` to ``end_s``."""

    target: str
    start_s: float
    end_s: float

    @property
    def is_link(self) -> bool:
        return "~" in self.target


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")


def _seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_outage(text: str) -> Outage:
    """``SITE@T0-T1`` or ``SITE_A~SITE_B@T0-T1``; times like 7200, 90m, 2h, 1.5h."""
    try:
        target, window = text.split("@")
        start, end = (_seconds(t) for t in window.split("-"))
    except ValueError:
        raise ConfigurationError(
            f"cannot read outage {text!r}", "the form is SITE@T0-T1 or SITE~SITE@T0-T1",
            "e.g. --outage E1_BNL@2h-4h or --outage E1_BNL~E1_JLAB@90m-3h",
        ) from None
    if end <= start:
        raise ConfigurationError(f"outage {text!r} ends before it starts", "", "give T0 < T1")
    return Outage(target, start, end)


@dataclass
class SimSettings:
    hours: float = 24.0
    seed: int = 1
    campaign_fraction: float = 0.9  # campaign core-hours / (free fabric capacity x hours)
    stf_rate_hz: float = 6000 / HOUR  # ePIC: about 6,000 STFs an hour
    stf_cores: int = 8
    stf_seconds: float = 240.0
    failure_rate: float = 0.005
    tick_s: float = 60.0
    max_decisions_per_tick: int = 50_000
    outages: list[Outage] = field(default_factory=list)
    classes: tuple[str, ...] | None = None  # restrict the campaign's workflow classes
    drain: bool = True  # run on after the window until the campaign is complete


class _Queue:
    __slots__ = ("express", "gpus", "gpus_used", "info", "pending", "running")

    def __init__(self, info: Any) -> None:
        self.info = info
        self.pending: dict[str, deque] = {}
        self.express: deque = deque()
        self.running: set[int] = set()
        self.gpus = info.gpus_per_node * (info.cores // info.cores_per_node)
        self.gpus_used = 0


class FabricSimulation:
    def __init__(self, catalogue: Catalogue, settings: SimSettings | None = None,
                 recorder: Any = None) -> None:
        self.settings = s = settings or SimSettings()
        self.recorder = recorder  # StoreRecorder: decisions and usage into the store
        self.fabric = Fabric.from_catalogue(catalogue)
        self.state = FabricState(self.fabric)
        self.broker = Broker(self.state)
        self.butterfly = (ButterflyBalancer(self.state, stream_rate_hz=s.stf_rate_hz)
                          if s.stf_rate_hz > 0 else None)
        self._check_outages(s.outages)
        self.rng = random.Random(s.seed)
        disk = [r for r in self.fabric.disk_rse if r]
        self.workload = Workload(s.seed, disk, s.stf_cores, s.stf_seconds, s.classes)
        self.queues = [_Queue(q) for q in self.fabric.queues]
        self.heap: list = []
        self._seq = 0
        self.jobs: dict[int, SimJob] = {}
        self.backlog: dict[str, deque] = {}
        self.stf_backlog: deque = deque()
        n = len(self.fabric.sites)
        self.site_class_cs = [dict() for _ in range(n)]  # core-seconds per class, whole run
        self.late_class_cs = [dict() for _ in range(n)]  # second half only (converged shares)
        self.class_last_end: dict[str, float] = {}
        self.site_cs = [0.0] * n  # core-seconds within the streaming window [0, hours]
        self.stats: dict[str, Any] = {
            "stfs_produced": 0, "stfs_processed": 0, "stfs_deferred_decisions": 0,
            "stfs_by_site": {}, "stf_latency": [], "campaign_jobs": 0, "campaign_done": 0,
            "job_failures": 0, "killed_by_outage": 0, "decisions": 0, "broker_seconds": 0.0,
            "no_candidate": 0, "campaign_done_at": None, "outage_windows": [],
        }

    def _check_outages(self, outages: list[Outage]) -> None:
        for outage in outages:
            names = outage.target.split("~")
            unknown = [n for n in names if n not in self.fabric.site_index]
            if unknown:
                raise ConfigurationError(f"outage names unknown sites {unknown}",
                                         f"sites: {self.fabric.sites}", "fix --outage")
            if outage.is_link:
                a, b = (self.fabric.site_index[n] for n in names)
                if (min(a, b), max(a, b)) not in self.fabric.links:
                    raise ConfigurationError(f"no link {outage.target} in the catalogue",
                                             "links are listed in each site file", "fix --outage")

    # -- event plumbing --------------------------------------------------------------------
    def _push(self, t: float, kind: int, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, payload))

    def run(self) -> dict[str, Any]:
        s, wall0 = self.settings, time.perf_counter()
        self._make_campaign()
        self._push(0.0, _TICK)
        self._push(0.0, _HEALTH)
        if s.stf_rate_hz > 0:
            self._push(0.0, _STF, 0)
        for i, outage in enumerate(s.outages):
            self._push(outage.start_s, _OUTAGE_START, i)
            self._push(outage.end_s, _OUTAGE_END, i)
        limit = s.hours * HOUR * (3 if s.drain else 1)
        now = 0.0
        while self.heap:
            now, _, kind, payload = heapq.heappop(self.heap)
            if now > limit:
                break
            if kind == _END:
                self._end(payload, now)
            elif kind == _STF:
                self._stf(payload, now)
            elif kind == _TICK:
                self._dispatch_backlog(now)
                if not self._finished(now):
                    self._push(now + s.tick_s, _TICK)
            elif kind == _HEALTH:
                self.state.health.refresh(now)
                if not self._finished(now):
                    self._push(now + 30.0, _HEALTH)
            elif kind == _OUTAGE_START:
                self._outage_start(s.outages[payload], now)
            elif kind == _OUTAGE_END:
                self._outage_end(s.outages[payload], now)
            if self._finished(now) and kind == _END:
                break
        if self.recorder is not None:
            self.recorder.close()
        return self._report(now, time.perf_counter() - wall0)

    def _finished(self, now: float) -> bool:
        st = self.stats
        return (now >= self.settings.hours * HOUR and st["campaign_done"] == st["campaign_jobs"]
                and st["stfs_processed"] == st["stfs_produced"])

    # -- workload --------------------------------------------------------------------------
    def _make_campaign(self) -> None:
        s = self.settings
        stream_cores = s.stf_rate_hz * s.stf_seconds * s.stf_cores
        core_hours = s.campaign_fraction * max(sum(self.fabric.site_cores) - stream_cores, 0) \
            * s.hours
        n_jobs = int(core_hours / self.workload.mean_core_hours)
        for _ in range(n_jobs):
            job = self.workload.campaign_job()
            self.jobs[id(job)] = job
            self.backlog.setdefault(job.request.workflow_class, deque()).append(job)
        self.stats["campaign_jobs"] = n_jobs

    def _stf(self, sequence: int, now: float) -> None:
        job = self.workload.stf_job(sequence)
        job.events.append(now)
        self.jobs[id(job)] = job
        self.stats["stfs_produced"] += 1
        if not self._submit(job, now):
            self.stf_backlog.append(job)
        nxt = now + self.rng.expovariate(self.settings.stf_rate_hz)
        if nxt < self.settings.hours * HOUR:
            self._push(nxt, _STF, sequence + 1)

    def _submit(self, job: SimJob, now: float) -> bool:
        t0 = time.perf_counter()
        if job.is_stf:
            decision = self.butterfly.route(job.request.job_id, now)
            if decision.outcome != ASSIGNED:
                self.stats["stfs_deferred_decisions"] += 1
        else:
            decision = self.broker.decide(job.request, now)
        self.stats["broker_seconds"] += time.perf_counter() - t0
        self.stats["decisions"] += 1
        if self.recorder is not None:
            self.recorder.decision(decision, job.request, now)
        if decision.outcome != ASSIGNED:
            self.stats["no_candidate"] += not job.is_stf
            return False
        q = self.queues[decision.queue_index]
        job.queue = decision.queue_index
        req = job.request
        self.state.commit(job.queue, req.workflow_class, req.cores)
        if req.express or job.is_stf:
            q.express.append(job)
        else:
            q.pending.setdefault(req.workflow_class, deque()).append(job)
        self._start_jobs(q, now)
        return True

    def _dispatch_backlog(self, now: float) -> None:
        budget = self.settings.max_decisions_per_tick
        while self.stf_backlog and budget > 0:
            budget -= 1
            if not self._submit(self.stf_backlog[0], now):
                break
            self.stf_backlog.popleft()
        for backlog in self.backlog.values():
            while backlog and budget > 0:  # one refusal stops this class until the next tick
                budget -= 1
                if not self._submit(backlog[0], now):
                    break
                backlog.popleft()

    # -- queues ----------------------------------------------------------------------------
    def _start_jobs(self, q: _Queue, now: float) -> None:
        info, st = q.info, self.state
        while q.express:
            job = q.express[0]
            if job.request.cores > info.cores - st.running_cores[info.index]:
                break
            self._start(q, q.express.popleft(), now)
        fair = st.fairshare
        while True:
            waiting = [c for c, d in q.pending.items() if d]
            if not waiting:
                return
            free = info.cores - info.express_reserve_cores - st.running_cores[info.index]
            wf = waiting[0] if len(waiting) == 1 else fair.pick(info.site_index, waiting, now)
            job = q.pending[wf][0]
            if job.request.cores > free or job.request.gpus > q.gpus - q.gpus_used:
                return
            self._start(q, q.pending[wf].popleft(), now)

    def _start(self, q: _Queue, job: SimJob, now: float) -> None:
        self.state.start(q.info.index, job.request.workflow_class, job.request.cores)
        q.gpus_used += job.request.gpus
        q.running.add(id(job))
        job.started = now
        if job.is_stf:
            self.stats["stf_latency"].append(now - job.events[0])
        fails = self.rng.random() < self.settings.failure_rate
        duration = job.duration_s * (self.rng.random() if fails else 1.0)
        self._push(now + duration, _END, (id(job), now, not fails))

    def _end(self, payload: tuple[int, float, bool], now: float) -> None:
        key, started, ok = payload
        job = self.jobs[key]
        if job.started != started or job.done:
            return  # killed by an outage and already re-brokered
        q = self.queues[job.queue]
        if self.recorder is not None:
            self.recorder.usage(job.request, q.info.site, q.info.name, ok, job.started, now)
        self._release(q, job, now)
        self.state.health.record(q.info.site_index, ok, now)
        if ok:
            job.done = True
            if job.is_stf:
                self.stats["stfs_processed"] += 1
                by_site = self.stats["stfs_by_site"]
                by_site[q.info.site] = by_site.get(q.info.site, 0) + 1
            else:
                self.stats["campaign_done"] += 1
                self.class_last_end[job.request.workflow_class] = now
                if self.stats["campaign_done"] == self.stats["campaign_jobs"]:
                    self.stats["campaign_done_at"] = now
            del self.jobs[key]
        else:
            self.stats["job_failures"] += 1
            self._retry(job, now)
        self._start_jobs(q, now)

    def _release(self, q: _Queue, job: SimJob, now: float) -> None:
        req, site = job.request, q.info.site_index
        self.state.finish(q.info.index, req.workflow_class, req.cores)
        q.gpus_used -= req.gpus
        q.running.discard(id(job))
        self.state.fairshare.charge(site, req.workflow_class, req.cores * (now - job.started), now)
        end = self.settings.hours * HOUR
        window = req.cores * max(min(now, end) - min(job.started, end), 0.0)
        self.site_cs[site] += window
        table = self.site_class_cs[site]
        table[req.workflow_class] = table.get(req.workflow_class, 0.0) + window
        half = end / 2  # shares are judged on the second half of the window, once converged
        late = req.cores * max(min(now, end) - max(job.started, half), 0.0)
        if late:
            table = self.late_class_cs[site]
            table[req.workflow_class] = table.get(req.workflow_class, 0.0) + late
        job.started = -1.0

    def _retry(self, job: SimJob, now: float) -> None:
        job.attempt += 1
        job.queue = -1
        if not self._submit(job, now):
            if job.is_stf:
                self.stf_backlog.appendleft(job)
            else:
                self.backlog.setdefault(job.request.workflow_class, deque()).appendleft(job)

    # -- outages ---------------------------------------------------------------------------
    def _outage_start(self, outage: Outage, now: float) -> None:
        names = outage.target.split("~")
        window = {"target": outage.target, "start_h": outage.start_s / HOUR,
                  "end_h": outage.end_s / HOUR, "stfs_by_site_at_start":
                  dict(self.stats["stfs_by_site"])}
        self.stats["outage_windows"].append(window)
        if outage.is_link:
            self.state.set_link(names[0], names[1], 0.0)
            return
        site = self.fabric.site_index[names[0]]
        self.state.health.add_downtime(site, outage.start_s, outage.end_s)
        self.state.health.refresh(now)
        moved = []
        for q in self.queues:
            if q.info.site_index != site:
                continue
            for key in list(q.running):
                job = self.jobs[key]
                self._release(q, job, now)
                moved.append(job)
            for dq in (q.express, *q.pending.values()):
                while dq:
                    job = dq.popleft()
                    self.state.withdraw(q.info.index, job.request.workflow_class,
                                        job.request.cores)
                    moved.append(job)
        self.stats["killed_by_outage"] += len(moved)
        window["jobs_moved"] = len(moved)
        for job in moved:
            self._retry(job, now)

    def _outage_end(self, outage: Outage, now: float) -> None:
        for window in self.stats["outage_windows"]:
            if window["target"] == outage.target and "stfs_by_site_at_end" not in window:
                window["stfs_by_site_at_end"] = dict(self.stats["stfs_by_site"])
        if outage.is_link:
            a, b = outage.target.split("~")
            self.state.set_link(a, b, 1.0)
        else:
            self.state.health.refresh(now)
        self._dispatch_backlog(now)

    # -- report ----------------------------------------------------------------------------
    def _report(self, now: float, wall_s: float) -> dict[str, Any]:
        for q in self.queues:  # count work still running at the end
            for key in list(q.running):
                self._release(q, self.jobs[key], now)
        fab, st = self.fabric, self.stats
        horizon = min(now, self.settings.hours * HOUR) or 1.0
        sites = {}
        deviations = []
        for i, name in enumerate(fab.sites):
            targets = fab.site_shares[i]
            late = self.late_class_cs[i]
            late_total = sum(late.values()) or 1.0
            actual = {c: round(late.get(c, 0.0) / late_total, 3) for c in
                      sorted(set(targets) | set(late))}
            # a class without work cannot use its share: judge against the targets of the
            # classes that ran, renormalised (what fair share promises under contention)
            ran = {c: t for c, t in targets.items() if late.get(c)}
            norm = sum(ran.values()) or 1.0
            tv = 0.5 * sum(abs(actual.get(c, 0.0) - ran.get(c, 0.0) / norm) for c in actual)
            deviations.append(tv)
            sites[name] = {
                "cores": fab.site_cores[i],
                "utilisation": round(self.site_cs[i] / (fab.site_cores[i] * horizon), 3),
                "share_target": targets, "share_actual": actual,
                "share_deviation": round(tv, 3),
            }
        lat = sorted(st["stf_latency"])
        in_flight = sum(1 for j in self.jobs.values() if j.is_stf)
        total_cs = sum(self.site_cs)
        return {
            "simulated_hours": round(now / HOUR, 2),
            "wall_time_s": round(wall_s, 2),
            "fabric": {"sites": len(fab.sites), "queues": len(fab.queues),
                       "cores": sum(fab.site_cores)},
            "utilisation": round(total_cs / (sum(fab.site_cores) * horizon), 3),
            "sites": sites,
            "share_deviation_mean": round(sum(deviations) / len(deviations), 3),
            "campaign": {
                "jobs": st["campaign_jobs"], "done": st["campaign_done"],
                "time_to_complete_h": round(st["campaign_done_at"] / HOUR, 2)
                if st["campaign_done_at"] else None,
                "class_complete_h": {c: round(t / HOUR, 2) for c, t in
                                     sorted(self.class_last_end.items())
                                     if not self.backlog.get(c)},
                "failures_retried": st["job_failures"],
                "moved_by_outages": st["killed_by_outage"],
            },
            "streaming": {
                "stfs_produced": st["stfs_produced"], "stfs_processed": st["stfs_processed"],
                "in_flight": in_flight,
                "lost": st["stfs_produced"] - st["stfs_processed"] - in_flight,
                "by_site": st["stfs_by_site"],
                "deferred_decisions": st["stfs_deferred_decisions"],
                "latency_s": {"p50": round(lat[len(lat) // 2], 1) if lat else None,
                              "p99": round(lat[int(len(lat) * 0.99)], 1) if lat else None},
            },
            "outages": st["outage_windows"],
            "brokerage": {
                "decisions": st["decisions"],
                "decisions_per_s": round(st["decisions"] / st["broker_seconds"])
                if st["broker_seconds"] else None,
                "no_candidate": st["no_candidate"],
            },
        }
