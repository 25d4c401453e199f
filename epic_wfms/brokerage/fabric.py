"""The catalogue precomputed for brokerage: flat per-queue records and a site bandwidth matrix.

Built once from the validated pydantic catalogue; brokerage decisions then touch only plain
tuples, lists and ints (no validation per decision), which is what makes them fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from epic_wfms.sites import Catalogue

HOUR = 3600.0


@dataclass(slots=True, frozen=True)
class QueueInfo:
    """One queue as brokerage sees it (static facts only)."""

    index: int
    name: str
    site: str
    site_index: int
    echelon: str
    batch_system: str
    cores: int
    cores_per_node: int
    memory_per_core_gb: float
    arch: str
    gpus_per_node: int
    max_walltime_s: float
    max_queued: int
    classes: frozenset[str]
    pledged: bool
    express_reserve_cores: int
    class_queue_cap: dict[str, int]  # jobs of a class that may wait here (share of max_queued)


@dataclass(slots=True)
class Fabric:
    """Sites, queues, RSE ownership and the widest-path bandwidth between every two sites."""

    sites: list[str]
    site_cores: list[int]
    site_shares: list[dict[str, float]]
    echelons: list[str]
    queues: list[QueueInfo]
    rse_site: dict[str, int]
    disk_rse: list[str | None]
    links: dict[tuple[int, int], float]
    bandwidth: list[list[float]] = field(default_factory=list)
    site_index: dict[str, int] = field(default_factory=dict)
    queue_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.site_index = {name: i for i, name in enumerate(self.sites)}
        self.queue_index = {q.name: q.index for q in self.queues}
        self.bandwidth = widest_paths(len(self.sites), self.links)

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue) -> Fabric:
        sites = sorted(catalogue.sites)
        index = {name: i for i, name in enumerate(sites)}
        queues: list[QueueInfo] = []
        links: dict[tuple[int, int], float] = {}
        for name in sites:
            site = catalogue.sites[name]
            for queue in site.queues:
                queues.append(QueueInfo(
                    index=len(queues), name=queue.name, site=name, site_index=index[name],
                    echelon=site.echelon, batch_system=queue.batch_system, cores=queue.cores,
                    cores_per_node=queue.cores_per_node,
                    memory_per_core_gb=queue.memory_per_core_gb, arch=queue.arch,
                    gpus_per_node=queue.gpus_per_node, max_walltime_s=queue.max_walltime_h * HOUR,
                    max_queued=queue.max_queued, classes=frozenset(queue.workflow_classes),
                    pledged=site.queue_pledged(queue),
                    express_reserve_cores=int(queue.cores * queue.express_reserve),
                    class_queue_cap=class_caps(queue.max_queued, queue.workflow_classes,
                                               site.shares),
                ))
            for link in site.links:
                key = tuple(sorted((index[name], index[link.to])))
                # both ends may declare the link: the smaller figure is what both can sustain
                links[key] = min(links.get(key, link.gbps), link.gbps)
        return cls(
            sites=sites,
            site_cores=[catalogue.sites[n].cores for n in sites],
            site_shares=[dict(catalogue.sites[n].shares) for n in sites],
            echelons=[catalogue.sites[n].echelon for n in sites],
            queues=queues,
            rse_site={s.rse: index[n] for n in sites for s in catalogue.sites[n].storage},
            disk_rse=[catalogue.sites[n].rse("DISK") for n in sites],
            links=links,
        )

    def e1_sites(self) -> list[int]:
        return [i for i, e in enumerate(self.echelons) if e == "E1"]

    def rebuild_bandwidth(self, factors: dict[tuple[int, int], float]) -> None:
        """Recompute paths with some links degraded (factor 0 = down)."""
        degraded = {k: v * factors.get(k, 1.0) for k, v in self.links.items()}
        self.bandwidth = widest_paths(len(self.sites), degraded)


def class_caps(max_queued: int, classes: list[str], shares: dict[str, float]) -> dict[str, int]:
    """Split a queue's waiting slots among its classes by the site's shares.

    Without it the first class to arrive fills the batch queue and the others cannot get in,
    whatever the shares say (PanDA caps queued jobs per global share for the same reason).
    """
    weights = {c: shares.get(c, 0.0) for c in classes}
    total = sum(weights.values())
    floor = min(10, max_queued)
    if not total:
        return dict.fromkeys(classes, max(max_queued // len(classes), floor))
    return {c: max(int(max_queued * w / total), floor) for c, w in weights.items()}


def widest_paths(n: int, links: dict[tuple[int, int], float]) -> list[list[float]]:
    """Bottleneck bandwidth of the best path between every two sites (Floyd-Warshall, max-min).

    Data reach a site without a direct link through the E1s; a path is as fast as its slowest hop.
    """
    bw = [[0.0] * n for _ in range(n)]
    for i in range(n):
        bw[i][i] = float("inf")
    for (a, b), gbps in links.items():
        if gbps > 0:
            bw[a][b] = bw[b][a] = max(bw[a][b], gbps)
    for k in range(n):
        row_k = bw[k]
        for i in range(n):
            via = bw[i][k]
            if via == 0.0:
                continue
            row_i = bw[i]
            for j in range(n):
                cand = via if via < row_k[j] else row_k[j]
                if cand > row_i[j]:
                    row_i[j] = cand
    return bw
