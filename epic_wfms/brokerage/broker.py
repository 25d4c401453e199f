"""Choose a site/queue for a job: filter the candidates, score them, keep the reasons.

Filters (a queue is out if): it does not run the job's workflow class, has another
architecture, lacks the GPUs, the memory per core, the walltime or the cores per node, its
site is in downtime or avoided for recent failures, or its batch queue is full.
Scores (higher wins), each in [0, 1] and weighted per lane:
  locality   1 if an input replica is at the site, else 1 / (1 + minutes to move the input
             over the best network path from the nearest replica, at most 2 Gbit/s per job)
  capacity   free cores / cores (normal work may not eat the express reserve)
  depth      1 - jobs queued / queue limit (each class may fill only its share of the limit)
  share      headroom of the workflow class under the site's share target (R8.5)
  pledge     opportunistic queues suit short, low-criticality work; long jobs lose there
  size       (express lane) big sites start work soonest (R7.5 "high-throughput facilities")
A probing site (recovering from failures) has its score multiplied by a penalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from epic_wfms.brokerage.decision import ASSIGNED, NO_CANDIDATE, Decision
from epic_wfms.brokerage.fabric import Fabric
from epic_wfms.brokerage.request import EXPRESS_PRIORITY, JobRequest
from epic_wfms.brokerage.state import FabricState

COMPONENTS = ("locality", "capacity", "depth", "share", "pledge", "size")


@dataclass(frozen=True, slots=True)
class Weights:
    locality: float
    capacity: float
    depth: float
    share: float
    pledge: float
    size: float


NORMAL = Weights(locality=3.0, capacity=2.0, depth=1.0, share=2.0, pledge=1.0, size=0.0)
EXPRESS = Weights(locality=1.0, capacity=4.0, depth=2.0, share=0.0, pledge=1.0, size=1.0)
_WEIGHTS_SHOWN = {lane: {k: getattr(w, k) for k in COMPONENTS}
                  for lane, w in (("normal", NORMAL), ("express", EXPRESS))}


class Broker:
    """Fast brokerage over a precomputed :class:`Fabric` and a live :class:`FabricState`."""

    def __init__(self, state: FabricState, transfer_gbps_cap: float = 2.0) -> None:
        self.state = state
        #: one job's input moves at most this fast whatever the link (FTS per-file rates)
        self.transfer_gbps_cap = transfer_gbps_cap
        self.fabric: Fabric = state.fabric
        self._static: dict[tuple[str, str | None, bool], tuple[list[tuple], dict]] = {}
        self._locality: dict[tuple[tuple[str, ...], float],
                             tuple[object, list[float], frozenset[int]]] = {}
        biggest = max(self.fabric.site_cores)
        self._size = [math.log1p(c) / math.log1p(biggest) for c in self.fabric.site_cores]

    # -- filters ---------------------------------------------------------------------------
    def _static_candidates(self, req: JobRequest) -> tuple[list[tuple], dict]:
        """Class, architecture and GPU filters depend on the request kind only: cache them.

        Candidates are flat tuples of the queue facts the per-decision loop reads.
        """
        key = (req.workflow_class, req.arch, req.gpus > 0)
        hit = self._static.get(key)
        if hit is None:
            kept, rejected = [], {}
            for q in self.fabric.queues:
                why = None
                if req.workflow_class not in q.classes:
                    why = "workflow_class"
                elif req.arch is not None and q.arch != req.arch:
                    why = "arch"
                elif req.gpus > 0 and q.gpus_per_node == 0:
                    why = "gpu"
                if why:
                    rejected[why] = rejected.get(why, 0) + 1
                else:
                    kept.append((q.index, q.site_index, q.cores_per_node, q.memory_per_core_gb,
                                 q.max_walltime_s, q.gpus_per_node, q.max_queued, q.cores,
                                 q.express_reserve_cores, q.pledged,
                                 q.class_queue_cap[req.workflow_class]))
            hit = self._static[key] = (kept, rejected)
        return hit

    def _locality_scores(self, req: JobRequest) -> tuple[list[float], frozenset[int]]:
        """Per site: 1 with a replica there, else 1 / (1 + minutes to transfer the input).

        Also the sites holding a replica. Cached per input; recomputed when links change.
        """
        key = (req.input_rses, req.input_gb)
        bandwidth = self.fabric.bandwidth
        hit = self._locality.get(key)
        if hit is not None and hit[0] is bandwidth:
            return hit[1], hit[2]
        replicas = frozenset(self.fabric.rse_site[r] for r in req.input_rses
                             if r in self.fabric.rse_site)
        bits = req.input_gb * 8.0
        scores = []
        for s in range(len(self.fabric.sites)):
            if not bits or s in replicas:
                scores.append(1.0)
                continue
            gbps = min(max((bandwidth[r][s] for r in replicas), default=0.0),
                       self.transfer_gbps_cap)
            scores.append(1.0 / (1.0 + bits / gbps / 60.0) if gbps > 0 else 0.0)
        if len(self._locality) > 4096:
            self._locality.clear()
        self._locality[key] = (bandwidth, scores, replicas)
        return scores, replicas

    # -- decision --------------------------------------------------------------------------
    def decide(self, req: JobRequest, now: float = 0.0) -> Decision:
        static, static_rejected = self._static_candidates(req)
        st, fab = self.state, self.fabric
        express = req.express or req.priority >= EXPRESS_PRIORITY
        w = EXPRESS if express else NORMAL
        wl, wc, wd, wsh, wp, wz = w.locality, w.capacity, w.depth, w.share, w.pledge, w.size
        blocked, probing = st.health.blocked_until, st.health.probing
        running, queued, queued_class = st.running_cores, st.queued, st.queued_by_class
        committed, shares, site_cores = st.fairshare.committed, fab.site_shares, fab.site_cores
        locality, replica_sites = self._locality_scores(req)
        size = self._size
        wf, cores, mem, wall, gpus = (req.workflow_class, req.cores, req.memory_per_core_gb,
                                      req.walltime_s, req.gpus)
        rejected: dict[str, int] = {}
        best = second = None  # (score, candidate, components)
        for cand in static:
            qi, s, cpn, qmem, qwall, gpn, maxq, qcores, reserve, pledged, class_cap = cand
            if cores > cpn:
                why = "cores"
            elif mem > qmem:
                why = "memory"
            elif wall > qwall:
                why = "walltime"
            elif gpus > gpn:
                why = "gpu"
            elif blocked[s] > now:
                why = "site_unavailable"
            elif queued[qi] >= maxq or queued_class[qi][wf] >= class_cap:
                why = "queue_full"
            else:
                why = None
            if why:
                rejected[why] = rejected.get(why, 0) + 1
                continue
            loc = locality[s]
            usable = qcores if express else qcores - reserve
            free = usable - running[qi]
            cap = free / usable if free > 0 else 0.0
            depth = 1.0 - queued[qi] / (maxq + 1)
            x = (shares[s].get(wf, 0.0) * site_cores[s] - committed[s][wf]) / (
                0.05 * site_cores[s] + cores)
            share = 0.5 + 0.5 * x / (1.0 + (x if x > 0 else -x))
            pledge = 1.0 if pledged else 0.8 - 0.6 * wall / qwall
            score = (wl * loc + wc * cap + wd * depth + wsh * share + wp * pledge
                     + wz * size[s])
            if probing[s]:
                score *= st.health.policy.probing_penalty
            if best is None or score > best[0]:
                second, best = best, (score, cand, (loc, cap, depth, share, pledge, size[s]))
            elif second is None or score > second[0]:
                second = (score, cand, (loc, cap, depth, share, pledge, size[s]))
        passed = len(static) - sum(rejected.values())
        for key, n in static_rejected.items():
            rejected[key] = rejected.get(key, 0) + n
        lane = "express" if express else "normal"
        if best is None:
            return Decision(req.job_id, NO_CANDIDATE, None, None, -1, 0.0, now, {
                "lane": lane, "rejected": rejected,
                "summary": "no queue passes the filters: "
                           + ", ".join(f"{k} x{n}" for k, n in sorted(rejected.items())),
            })
        score, cand, comps = best
        q = fab.queues[cand[0]]
        reasons = {
            "lane": lane,
            "components": dict(zip(COMPONENTS, comps, strict=True)),
            "weights": _WEIGHTS_SHOWN[lane],
            "input_at_site": q.site_index in replica_sites,
            "probing": probing[q.site_index],
            "candidates": passed,
            "rejected": rejected,
        }
        decision = Decision(req.job_id, ASSIGNED, q.site, q.name, q.index, score, now, reasons)
        if second is not None:
            runner = fab.queues[second[1][0]]
            reasons["runner_up"] = {"site": runner.site, "queue": runner.name,
                                    "score": second[0]}
            if req.clone and runner.site != q.site:
                decision.clone_site, decision.clone_queue = runner.site, runner.name
        return decision
