"""Keep a pool of standing streaming workers alive at a target size (R3.9).

At ``run_imminent`` epic-wfms writes the pool's target size to a small JSON file
(``epic_wfms.sites.standing_pool.write_pool_target``: ``{"target", "run_number",
"updated"}``); at ``end_run`` it writes 0. Two Harvester plugins read it:

* ``StandingPoolThrottler`` (queue config block ``throttler``): Harvester's worker adjuster
  asks ``to_be_throttled(queue_config)`` every cycle before submitting; we throttle while
  the workers alive (submitted + running) reach the target, and let submission run while
  there is a deficit - so a worker that dies (node failure, walltime, pre-emption) is
  replaced in the next cycle: replenishment.
* ``StandingPoolWorkerMaker`` (block ``workerMaker``): makes each worker a standing
  streaming worker (cores, memory, walltime of the pool, tagged with the pool and run in
  ``workAttributes``) instead of sizing it from PanDA job parameters.

Harvester's throttler answer is yes/no: once released, the worker adjuster would submit up
to the queue's static limits (nQueueLimitWorker, maxWorkers), overshooting the target. So
the throttler also grants the cycle's deficit, and the worker maker stops making workers
(returns None, which Harvester counts as a chunk not made - harmless in pull mode, where
chunks carry no jobs) once the grant is used. Both run in the submitter's process (the
adjuster is called from the submitter thread right before ``make_workers``).

Interfaces follow HSF/harvester: ``PluginFactory`` passes every key of the block (plus
``queueName``, ``siteName``) as keyword arguments; ``to_be_throttled`` returns
``(bool, message)``; ``make_worker(jobspec_list, queue_config, job_type, resource_type,
prod_source_label)`` returns a ``WorkSpec`` (or None on failure).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # the real base classes and WorkSpec where Harvester is installed
    from pandaharvester.harvestercore.plugin_base import PluginBase
    from pandaharvester.harvestercore.work_spec import WorkSpec
    from pandaharvester.harvesterworkermaker.base_worker_maker import BaseWorkerMaker
except ImportError:  # pragma: no cover - exercised where Harvester is absent (CI)
    WorkSpec = None

    class PluginBase:  # same contract as Harvester's: every keyword becomes an attribute
        def __init__(self, **kwarg: Any) -> None:
            for key, value in kwarg.items():
                setattr(self, key, value)

    class BaseWorkerMaker(PluginBase):
        def get_num_jobs_per_worker(self, n_workers: int) -> int:
            return getattr(self, "nJobsPerWorker", 1)

        def get_num_workers_per_job(self, n_workers: int) -> int:
            return getattr(self, "nWorkersPerJob", 1)

        def num_ready_resources(self) -> int:
            return getattr(self, "nReadyResources", 1)

        def get_max_workers_per_job_in_total(self) -> int:
            return getattr(self, "maxWorkersPerJobInTotal", 10)

        def get_max_workers_per_job_per_cycle(self) -> int | None:
            return getattr(self, "maxWorkersPerJobPerCycle", None)


log = logging.getLogger("epic_harvester.standing_pool")

# WorkSpec status values (pandaharvester.harvestercore.work_spec.WorkSpec.ST_*)
ALIVE_STATUSES = frozenset({"submitted", "ready", "running", "idle", "pending"})
FINAL_STATUSES = frozenset({"finished", "failed", "cancelled", "missed"})


# -- the target, written by epic-wfms (epic_wfms.sites.standing_pool.write_pool_target) ---
@dataclass
class PoolTarget:
    """Reads the target file; a missing or broken file keeps the last good value."""

    path: Path | None
    default: int = 0
    last: int | None = None
    run_number: int | None = None

    def read(self) -> int:
        if self.path is None:
            return self.default
        try:
            data = json.loads(Path(self.path).read_text())
            target = int(data["target"])
            if target < 0:
                raise ValueError("negative target")
        except FileNotFoundError:
            return self.last if self.last is not None else self.default
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("pool target %s unreadable (%s); keeping %s", self.path, error, self.last)
            return self.last if self.last is not None else self.default
        self.last, self.run_number = target, data.get("run_number")
        return target


# -- the replenishment arithmetic -----------------------------------------------------------
@dataclass(frozen=True)
class PoolPlan:
    target: int
    alive: int
    to_submit: int
    excess: int
    replaced: int = 0  # workers that ended since they were last counted
    detail: dict[str, int] = field(default_factory=dict)


def plan_pool(target: int, statuses: Iterable[str], max_new_per_cycle: int = 0,
              previously_alive: int | None = None) -> PoolPlan:
    """How many workers to submit (deficit, capped per cycle) or drain (excess)."""
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    alive = sum(n for s, n in counts.items() if s in ALIVE_STATUSES)
    deficit = max(target - alive, 0)
    if max_new_per_cycle > 0:
        deficit = min(deficit, max_new_per_cycle)
    replaced = max((previously_alive or 0) - alive, 0) if previously_alive is not None else 0
    return PoolPlan(target, alive, deficit, max(alive - target, 0), replaced, counts)


def _harvester_alive_counter(queue_name: str, site_name: str) -> int:
    """Workers of the queue alive in Harvester's own database (any alive status).

    ``DBProxy.get_worker_stats_full`` counts every status per queue; ``get_worker_stats``
    (0.7.5) keeps only the last status row it reads per resource type, so it under-counts."""
    from pandaharvester.harvestercore.db_proxy_pool import DBProxyPool

    stats = DBProxyPool().get_worker_stats_full(filter_site_list=[queue_name])
    totals = stats.get(queue_name, {}).get("_total", {}).get("_total", {})
    return sum(n for status, n in totals.items() if status in ALIVE_STATUSES)


# -- the per-cycle grant shared by the throttler and the worker maker ----------------------
_grants: dict[str, int] = {}
_grants_lock = threading.Lock()


def _grant(queue_name: str, workers: int) -> None:
    with _grants_lock:
        _grants[queue_name] = workers


def _take(queue_name: str) -> bool:
    """Use one worker of the queue's grant; True without a grant (no throttler configured)."""
    with _grants_lock:
        left = _grants.get(queue_name)
        if left is None:
            return True
        if left <= 0:
            return False
        _grants[queue_name] = left - 1
        return True


# -- the plugins ----------------------------------------------------------------------------
class StandingPoolThrottler(PluginBase):
    """Throttle submission once the pool is full; release it while workers are missing.

    Block keys: ``targetFile`` (JSON written by epic-wfms), ``targetWorkers`` (static
    fallback), ``maxPool`` (hard cap). ``workerCounter(queue_name, site_name) -> int`` may be
    injected; by default the queue's alive workers in Harvester's database are counted.
    """

    def __init__(self, **kwarg: Any) -> None:
        self.targetFile: str | None = None
        self.targetWorkers = 0
        self.maxPool = 0
        self.workerCounter: Callable[[str, str], int] | None = None
        PluginBase.__init__(self, **kwarg)
        self._target = PoolTarget(Path(self.targetFile) if self.targetFile else None,
                                  int(self.targetWorkers))

    def target(self) -> int:
        target = self._target.read()
        return min(target, int(self.maxPool)) if self.maxPool else target

    def to_be_throttled(self, queue_config: Any, queue_config_mapper: Any = None
                        ) -> tuple[bool, str]:
        counter = self.workerCounter or _harvester_alive_counter
        queue_name = queue_config.queueName
        site_name = getattr(queue_config, "siteName", queue_name) or queue_name
        target = self.target()
        alive = counter(queue_name, site_name)
        _grant(queue_name, max(target - alive, 0))
        if alive >= target:
            return True, f"standing pool full: {alive} alive >= target {target}"
        return False, f"standing pool short by {target - alive}: {alive} alive < target {target}"


class StandingPoolWorkerMaker(BaseWorkerMaker):
    """Make standing streaming workers of a fixed shape, tagged with their pool and run.

    Block keys: ``poolName``, ``nCore``, ``minRamCount`` (MB), ``maxWalltime`` (s),
    ``targetFile`` (to stamp the run number), ``pilotType`` (default ``PR``).
    """

    def __init__(self, **kwarg: Any) -> None:
        self.poolName = ""
        self.nCore = 1
        self.minRamCount = 2000
        self.maxWalltime = 72 * 3600
        self.targetFile: str | None = None
        self.pilotType = "PR"
        self.workSpecFactory: Callable[[], Any] | None = None
        BaseWorkerMaker.__init__(self, **kwarg)
        self._target = PoolTarget(Path(self.targetFile) if self.targetFile else None)

    def make_worker(self, jobspec_list: list, queue_config: Any, job_type: str,
                    resource_type: str, prod_source_label: str = "ANY") -> Any:
        if not _take(queue_config.queueName):
            return None  # the pool's deficit for this cycle is already being submitted
        factory = self.workSpecFactory or WorkSpec
        if factory is None:
            log.error("no WorkSpec class: run inside Harvester or pass workSpecFactory")
            return None
        self._target.read()
        work_spec = factory()
        work_spec.creationTime = _naive_utcnow()
        work_spec.nCore = int(self.nCore)
        work_spec.minRamCount = int(self.minRamCount)
        work_spec.maxWalltime = int(self.maxWalltime)
        work_spec.maxDiskCount = getattr(self, "maxDiskCount", 0) or 0
        work_spec.jobType = job_type if job_type not in (None, "ANY") else "managed"
        work_spec.resourceType = resource_type
        work_spec.pilotType = self.pilotType
        work_spec.workAttributes = {
            "epicPool": self.poolName or queue_config.queueName,
            "epicRunNumber": self._target.run_number,
            "standing": True,
        }
        return work_spec

    def get_num_jobs_per_worker(self, n_workers: int) -> int:
        return 1  # a standing worker takes its work (TF slices) over messaging, not from jobs


def _naive_utcnow() -> Any:
    """Harvester stores naive UTC datetimes (core_utils.naive_utcnow)."""
    import datetime

    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
