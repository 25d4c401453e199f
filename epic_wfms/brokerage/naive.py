"""A straightforward broker, kept as the benchmark's baseline (bench/brokerage_bench.py).

It does what a first implementation would: validate each request with pydantic, walk the
pydantic catalogue for every decision, find the transfer path by a fresh search over the
link list, and score every queue. Same filters and the same idea of scoring as ``Broker``.
"""

from __future__ import annotations

from pydantic import BaseModel

from epic_wfms.brokerage.request import JobRequest
from epic_wfms.sites import Catalogue


class _Request(BaseModel):
    job_id: str
    workflow_class: str
    cores: int
    memory_per_core_gb: float
    walltime_s: float
    arch: str | None
    gpus: int
    input_rses: tuple[str, ...]
    input_gb: float


class NaiveBroker:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.running: dict[str, int] = {}

    def _path_gbps(self, a: str, b: str) -> float:
        best = {a: float("inf")}
        frontier = [a]
        while frontier:
            nxt = []
            for here in frontier:
                for site in self.catalogue:
                    for link in site.links:
                        ends = (site.name, link.to)
                        if here not in ends:
                            continue
                        other = ends[1] if ends[0] == here else ends[0]
                        width = min(best[here], link.gbps)
                        if width > best.get(other, 0.0):
                            best[other] = width
                            nxt.append(other)
            frontier = nxt
        return best.get(b, 0.0)

    def decide(self, request: JobRequest) -> tuple[str, str] | None:
        req = _Request.model_validate(request, from_attributes=True)
        owners = {s.rse: site.name for site in self.catalogue for s in site.storage}
        replica_sites = {owners[r] for r in req.input_rses if r in owners}
        best = None
        for site, queue in self.catalogue.queues():
            if (req.workflow_class not in queue.workflow_classes
                    or (req.arch and queue.arch != req.arch)
                    or req.gpus > queue.gpus_per_node or req.cores > queue.cores_per_node
                    or req.memory_per_core_gb > queue.memory_per_core_gb
                    or req.walltime_s > queue.max_walltime_h * 3600):
                continue
            if not req.input_gb or site.name in replica_sites:
                loc = 1.0
            else:
                gbps = min(max(self._path_gbps(r, site.name) for r in replica_sites), 2.0)
                loc = 1.0 / (1.0 + req.input_gb * 8 / gbps / 60) if gbps else 0.0
            free = queue.cores - self.running.get(queue.name, 0)
            score = 3 * loc + 2 * max(free, 0) / queue.cores + 2 * site.shares.get(
                req.workflow_class, 0.0)
            if best is None or score > best[0]:
                best = (score, site.name, queue.name)
        return None if best is None else (best[1], best[2])
