"""The dynamic view brokerage decides on: cores in use, queue depths, health, shares, links."""

from __future__ import annotations

from epic_wfms.brokerage.fabric import Fabric
from epic_wfms.brokerage.fairshare import FairShare
from epic_wfms.brokerage.health import HealthPolicy, SiteHealth
from epic_wfms.errors import ConfigurationError


class FabricState:
    """Mutable counters indexed like ``Fabric.queues`` / ``Fabric.sites``.

    Fed by whoever knows the truth: the simulation, or PanDA/Harvester job and worker
    statistics in production (``running_cores``, ``queued`` per queue).
    """

    def __init__(self, fabric: Fabric, health: HealthPolicy | None = None) -> None:
        self.fabric = fabric
        self.running_cores = [0] * len(fabric.queues)
        self.queued = [0] * len(fabric.queues)
        self.queued_by_class: list[dict[str, int]] = [
            dict.fromkeys(q.classes, 0) for q in fabric.queues]
        self.health = SiteHealth(len(fabric.sites), health)
        self.fairshare = FairShare(fabric.site_shares)
        self.link_factor: dict[tuple[int, int], float] = {}

    def free_cores(self, q: int) -> int:
        return self.fabric.queues[q].cores - self.running_cores[q]

    def commit(self, q: int, workflow_class: str, cores: int) -> None:
        """A job was sent to queue q and waits there."""
        self.queued[q] += 1
        self.queued_by_class[q][workflow_class] += 1
        self.fairshare.committed[self.fabric.queues[q].site_index][workflow_class] += cores

    def start(self, q: int, workflow_class: str, cores: int) -> None:
        self.queued[q] -= 1
        self.queued_by_class[q][workflow_class] -= 1
        self.running_cores[q] += cores
        self.fairshare.running[self.fabric.queues[q].site_index][workflow_class] += cores

    def finish(self, q: int, workflow_class: str, cores: int) -> None:
        self.running_cores[q] -= cores
        self.fairshare.running[self.fabric.queues[q].site_index][workflow_class] -= cores
        self.fairshare.committed[self.fabric.queues[q].site_index][workflow_class] -= cores

    def withdraw(self, q: int, workflow_class: str, cores: int) -> None:
        """A queued job left the queue without running (re-brokered elsewhere)."""
        self.queued[q] -= 1
        self.queued_by_class[q][workflow_class] -= 1
        self.fairshare.committed[self.fabric.queues[q].site_index][workflow_class] -= cores

    def set_link(self, a: str, b: str, factor: float) -> None:
        """Degrade (0 < factor < 1), cut (0) or restore (1) the link between two sites."""
        ia, ib = self.fabric.site_index[a], self.fabric.site_index[b]
        key = (min(ia, ib), max(ia, ib))
        if key not in self.fabric.links:
            raise ConfigurationError(f"no link between {a} and {b}",
                                     "only links listed in the site files can be changed",
                                     "name two sites one of which lists the other in links")
        self.link_factor[key] = factor
        self.fabric.rebuild_bandwidth(self.link_factor)

    def direct_gbps(self, a: int, b: int) -> float:
        """Current bandwidth of the direct link (0 if none or cut)."""
        key = (min(a, b), max(a, b))
        return self.fabric.links.get(key, 0.0) * self.link_factor.get(key, 1.0)

    def link_gbps(self, a: int, b: int) -> float:
        """Current bandwidth of the best path between two sites."""
        return self.fabric.bandwidth[a][b]
