"""Harvester deployments: generated configs current and valid; the standing-pool plugins.

Harvester is not on PyPI, so CI cannot import it. The plugins are exercised the way Harvester
drives them, following its source (HSF/harvester d561b72f): PluginFactory builds a plugin
from a queue-config block (every key but module/name as keyword arguments, plus queueName
and siteName filled in by QueueConfigMapper); the worker adjuster calls the throttler's
``to_be_throttled(queue_config, queue_config_mapper=...)`` and then caps new workers by
nQueueLimitWorker, maxWorkers and maxNewWorkersPerCycle; the submitter asks the worker maker's
``make_worker(jobspec_list, queue_config, job_type, resource_type, prod_source_label=...)``.
``WorkSpecStandIn`` below carries the real WorkSpec's status constants and the attributes the
worker maker sets (names from work_spec.py's attributesWithTypes) - it is a stand-in, not
Harvester's class. Where pandaharvester is importable, the conformance test uses the real one.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from epic_wfms.sites import load_catalogue
from epic_wfms.sites.harvester import (
    KNOWN_PLUGINS,
    MANDATORY_BLOCKS,
    render,
    stale_files,
    validate_queueconfig,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "plugins" / "harvester"))
pool = importlib.import_module("epic_harvester.standing_pool")


class WorkSpecStandIn:
    ST_submitted, ST_running, ST_finished, ST_failed = "submitted", "running", "finished", "failed"
    ST_ready, ST_cancelled, ST_idle, ST_missed = "ready", "cancelled", "idle", "missed"
    ST_pending = "pending"
    ATTRIBUTES = ("workerID", "status", "creationTime", "nCore", "minRamCount", "maxDiskCount",
                  "maxWalltime", "jobType", "resourceType", "pilotType", "workAttributes")

    def __init__(self) -> None:
        for name in self.ATTRIBUTES:
            setattr(self, name, None)

    def __setattr__(self, name, value):  # a typo in the plugin would be a silent bug in Harvester
        if name not in self.ATTRIBUTES:
            raise AttributeError(f"WorkSpec has no attribute {name}")
        object.__setattr__(self, name, value)


def test_generated_configs_are_current():
    stale = stale_files(load_catalogue(), REPO / "harvester_configs")
    assert not stale, f"regenerate with `epic-wfms sites harvester-config`: {stale}"


def test_generated_configs_validate_as_harvester_loads_them():
    catalogue = load_catalogue()
    paths = sorted((REPO / "harvester_configs").glob("*/panda_queueconfig.json"))
    assert len(paths) == len(catalogue.sites)
    batch_plugins = set()
    for path in paths:
        data = json.loads(path.read_text())
        assert validate_queueconfig(data) == [], path
        site = catalogue.site(path.parent.name)
        assert sorted(data) == sorted(q.name for q in site.queues)
        for name, block in data.items():
            assert set(MANDATORY_BLOCKS) <= set(block)
            batch_plugins.add(block["submitter"]["name"])
            queue = next(q for q in site.queues if q.name == name)
            assert block["walltimeLimit"] == int(queue.max_walltime_h * 3600)
            if queue.harvester.standing_pool:
                assert block["throttler"]["name"] == "StandingPoolThrottler"
                assert block["maxWorkers"] == queue.harvester.standing_pool
    assert {"HTCondorSubmitter", "SlurmSubmitter", "K8sSubmitter"} <= batch_plugins
    cfg = (REPO / "harvester_configs/E1_BNL/panda_harvester.cfg").read_text()
    assert "[qconf]" in cfg and " BNL_STREAMING\n" in cfg


def test_validator_catches_what_harvester_would_reject():
    block = json.loads(render(load_catalogue(), ["E2_MIT"])["E2_MIT/panda_queueconfig.json"])
    del block["MIT_T2"]["sweeper"]
    block["MIT_T2"]["monitor"]["name"] = "CondorMonitor"
    block["MIT_T2"]["mapType"] = "Pull"
    k8s = json.loads(render(load_catalogue(), ["E2_CLOUD_GCP"])[
        "E2_CLOUD_GCP/panda_queueconfig.json"])
    del k8s["GCP_K8S"]["monitor"]["k8s_config_file"]
    block.update(k8s)
    problems = validate_queueconfig(block)
    assert "GCP_K8S.monitor: K8sMonitor needs 'k8s_config_file'" in problems
    assert any("missing mandatory plugin section 'sweeper'" in p for p in problems)
    assert any("unknown plugin pandaharvester.harvestermonitor.htcondor_monitor.CondorMonitor"
               in p for p in problems)
    assert any("mapType" in p for p in problems)


def test_stale_file_is_detected(tmp_path):
    catalogue = load_catalogue()
    for rel, text in render(catalogue).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert stale_files(catalogue, tmp_path) == []
    (tmp_path / "E1_JLAB/panda_queueconfig.json").write_text("{}")
    assert stale_files(catalogue, tmp_path) == ["E1_JLAB/panda_queueconfig.json"]


def _build(block: dict, queue: str, site: str, **extra):
    """What PluginFactory.get_plugin does with a queue-config block."""
    module = importlib.import_module(block["module"])
    args = {k: v for k, v in block.items() if k not in ("module", "name")}
    args.setdefault("queueName", queue)
    args.setdefault("siteName", site)
    return getattr(module, block["name"])(**args, **extra)


def test_plugin_methods_have_harvesters_signatures():
    maker = pool.StandingPoolWorkerMaker
    throttler = pool.StandingPoolThrottler
    assert list(inspect.signature(maker.make_worker).parameters) == [
        "self", "jobspec_list", "queue_config", "job_type", "resource_type",
        "prod_source_label"]
    assert inspect.signature(maker.make_worker).parameters["prod_source_label"].default == "ANY"
    assert list(inspect.signature(throttler.to_be_throttled).parameters) == [
        "self", "queue_config", "queue_config_mapper"]
    for name in ("get_num_jobs_per_worker", "get_num_workers_per_job"):
        assert list(inspect.signature(getattr(maker, name)).parameters) == ["self", "n_workers"]
    for name in ("num_ready_resources", "get_max_workers_per_job_in_total",
                 "get_max_workers_per_job_per_cycle"):
        assert list(inspect.signature(getattr(maker, name)).parameters) == ["self"]
    assert ("epic_harvester.standing_pool", "StandingPoolThrottler") in KNOWN_PLUGINS


class FakeBatch:
    """Workers in a batch system: submitted -> running; some die every cycle."""

    def __init__(self, rng: random.Random) -> None:
        self.workers: dict[int, str] = {}
        self.rng = rng

    def alive(self, queue_name: str, site_name: str) -> int:
        return sum(s in pool.ALIVE_STATUSES for s in self.workers.values())

    def cycle(self, deaths: int) -> None:
        running = [w for w, s in self.workers.items() if s == "running"]
        for worker in self.rng.sample(running, min(deaths, len(running))):
            self.workers[worker] = self.rng.choice(["failed", "finished", "missed"])
        for worker, status in self.workers.items():
            if status == "submitted":
                self.workers[worker] = "running"


def test_standing_pool_is_replenished_to_its_target(tmp_path):
    data = json.loads((REPO / "harvester_configs/E1_BNL/panda_queueconfig.json").read_text())
    qconf = data["BNL_STREAMING"]
    target_file = tmp_path / "BNL_STREAMING.json"
    batch = FakeBatch(random.Random(3))
    throttler = _build({**qconf["throttler"], "targetFile": str(target_file)}, "BNL_STREAMING",
                       "BNL_STREAMING", workerCounter=batch.alive)
    maker = _build({**qconf["workerMaker"], "targetFile": str(target_file)}, "BNL_STREAMING",
                   "BNL_STREAMING", workSpecFactory=WorkSpecStandIn)
    queue_config = SimpleNamespace(queueName="BNL_STREAMING", siteName="BNL_STREAMING",
                                   **{k: v for k, v in qconf.items() if not isinstance(v, dict)})
    made: list[WorkSpecStandIn] = []

    def harvester_cycle() -> str:
        """One worker-adjuster + submitter cycle, with Harvester's caps."""
        throttled, message = throttler.to_be_throttled(queue_config, queue_config_mapper=None)
        if throttled:
            return message
        n_queue = sum(s == "submitted" for s in batch.workers.values())
        n_alive = batch.alive("", "")
        n_new = min(queue_config.nQueueLimitWorker - n_queue,
                    queue_config.maxWorkers - n_alive, queue_config.maxNewWorkersPerCycle)
        for _ in range(max(n_new, 0)):
            spec = maker.make_worker([], queue_config, "managed", "MCORE")
            if spec is None:  # Harvester: a chunk not made (no jobs in pull mode)
                continue
            spec.workerID = len(made) + 1
            spec.status = WorkSpecStandIn.ST_submitted
            made.append(spec)
            batch.workers[spec.workerID] = spec.status
        return message

    assert "full: 0 alive >= target 0" in harvester_cycle()  # no run: no pool
    pool.write_pool_target(target_file, 40, run_number=1001)  # run_imminent
    for i in range(30):
        harvester_cycle()
        assert batch.alive("", "") == 40, f"cycle {i}"
        batch.cycle(deaths=5)  # workers die: walltime, node failures, pre-emption
    assert len(made) > 40 + 100  # the dead were replaced
    spec = made[-1]
    assert (spec.nCore, spec.maxWalltime) == (qconf["workerMaker"]["nCore"], 72 * 3600)
    assert spec.workAttributes == {"epicPool": "BNL_STREAMING", "epicRunNumber": 1001,
                                   "standing": True}
    pool.write_pool_target(target_file, 500, run_number=1002)  # more than the queue allows
    for _ in range(3):
        harvester_cycle()
    assert batch.alive("", "") == qconf["throttler"]["maxPool"]
    pool.write_pool_target(target_file, 0)  # end_run: nothing new is submitted
    before = len(made)
    batch.cycle(deaths=10)
    assert "pool full" in harvester_cycle() and len(made) == before


def test_pool_target_file_is_robust(tmp_path):
    path = tmp_path / "p.json"
    target = pool.PoolTarget(path, default=3)
    assert target.read() == 3  # no file yet: the static default
    pool.write_pool_target(path, 12, run_number=7)
    assert target.read() == 12 and target.run_number == 7
    path.write_text("{half a json")
    assert target.read() == 12  # a broken file keeps the last good value
    with pytest.raises(ValueError, match="must be >= 0"):
        pool.write_pool_target(path, -1)


def test_plan_pool_counts_alive_and_caps_per_cycle():
    plan = pool.plan_pool(10, ["running"] * 4 + ["submitted", "failed", "finished"],
                          max_new_per_cycle=3, previously_alive=8)
    assert (plan.alive, plan.to_submit, plan.excess, plan.replaced) == (5, 3, 0, 3)
    assert pool.plan_pool(2, ["running"] * 5).excess == 3


def test_conformance_with_real_harvester_base_classes():
    base = pytest.importorskip("pandaharvester.harvesterworkermaker.base_worker_maker")
    work_spec = pytest.importorskip("pandaharvester.harvestercore.work_spec")
    assert issubclass(pool.StandingPoolWorkerMaker, base.BaseWorkerMaker)
    assert set(work_spec.WorkSpec.ST_LIST) | {"pending"} >= pool.ALIVE_STATUSES
    maker = pool.StandingPoolWorkerMaker(queueName="Q", siteName="Q", nCore=8)
    spec = maker.make_worker([], SimpleNamespace(queueName="Q"), "managed", "MCORE")
    assert isinstance(spec, work_spec.WorkSpec) and spec.nCore == 8
