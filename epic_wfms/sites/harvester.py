"""Generate Harvester deployments from the site catalogue (R8.1, R3.9).

Per site: ``panda_queueconfig.json`` (the file Harvester's QueueConfigMapper reads: one
block per queue with the plugin sections messenger, monitor, preparator, stager, submitter,
sweeper, workerMaker and optionally throttler) and a ``panda_harvester.cfg`` fragment (the
[master], [qconf], [submitter] and [monitor] settings that differ per site; the rest comes
from Harvester's stock template). Plugin modules and classes are Harvester's stock ones for
each batch system (read from HSF/harvester, commit d561b72f), plus ePIC's standing-pool
plugins (plugins/harvester/epic_harvester) for streaming queues.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from epic_wfms.sites.catalogue import Catalogue
from epic_wfms.sites.models import Queue, Site
from epic_wfms.sites.standing_pool import pool_target_path

H = "pandaharvester."
STOCK: dict[str, dict[str, tuple[str, str]]] = {
    "htcondor": {
        "submitter": (H + "harvestersubmitter.htcondor_submitter", "HTCondorSubmitter"),
        "monitor": (H + "harvestermonitor.htcondor_monitor", "HTCondorMonitor"),
        "sweeper": (H + "harvestersweeper.htcondor_sweeper", "HTCondorSweeper"),
    },
    "slurm": {
        "submitter": (H + "harvestersubmitter.slurm_submitter", "SlurmSubmitter"),
        "monitor": (H + "harvestermonitor.slurm_squeue_monitor", "SlurmSqueueMonitor"),
        "sweeper": (H + "harvestersweeper.slurm_sweeper", "SlurmSweeper"),
    },
    "pbs": {
        "submitter": (H + "harvestersubmitter.pbs_submitter", "PBSSubmitter"),
        "monitor": (H + "harvestermonitor.pbs_monitor", "PBSMonitor"),
        "sweeper": (H + "harvestersweeper.pbs_sweeper", "PBSSweeper"),
    },
    "kubernetes": {
        "submitter": (H + "harvestersubmitter.k8s_submitter", "K8sSubmitter"),
        "monitor": (H + "harvestermonitor.k8s_monitor", "K8sMonitor"),
        "sweeper": (H + "harvestersweeper.k8s_sweeper", "K8sSweeper"),
    },
}
COMMON = {
    "shared_file_messenger": (H + "harvestermessenger.shared_file_messenger",
                              "SharedFileMessenger"),
    "dummy_preparator": (H + "harvesterpreparator.dummy_preparator", "DummyPreparator"),
    "rucio_preparator": (H + "harvesterpreparator.rucio_preparator", "RucioPreparator"),
    "dummy_stager": (H + "harvesterstager.dummy_stager", "DummyStager"),
    "rucio_stager": (H + "harvesterstager.rucio_stager", "RucioStager"),
    "simple_worker_maker": (H + "harvesterworkermaker.simple_worker_maker",
                            "SimpleWorkerMaker"),
    "simple_throttler": (H + "harvesterthrottler.simple_throttler", "SimpleThrottler"),
}
EPIC = {
    "pool_worker_maker": ("epic_harvester.standing_pool", "StandingPoolWorkerMaker"),
    "pool_throttler": ("epic_harvester.standing_pool", "StandingPoolThrottler"),
    # one host as the batch system: each worker a Pilot 3 process in its own PID namespace
    "local_submitter": ("epic_harvester.local_batch", "LocalPilotSubmitter"),
    "local_monitor": ("epic_harvester.local_batch", "LocalPilotMonitor"),
    "local_sweeper": ("epic_harvester.local_batch", "LocalPilotSweeper"),
}
#: every (module, class) a generated config may name; the validator refuses anything else
KNOWN_PLUGINS = {v for table in STOCK.values() for v in table.values()} | set(
    COMMON.values()) | set(EPIC.values())
#: keys a stock plugin reads unconditionally in its constructor (from the HSF/harvester source)
REQUIRED_KEYS = {
    "K8sSubmitter": ("k8s_config_file", "k8s_yaml_file"),
    "K8sMonitor": ("k8s_config_file",),
    "K8sSweeper": ("k8s_config_file",),
    "PBSSubmitter": ("templateFile",),
    "SlurmSubmitter": ("templateFile",),
    "StandingPoolThrottler": ("targetFile",),
    "StandingPoolWorkerMaker": ("poolName", "nCore"),
    "LocalPilotSubmitter": ("pilotCommand",),
}
MANDATORY_BLOCKS = ("messenger", "monitor", "preparator", "stager", "submitter", "sweeper",
                    "workerMaker")
OPTIONAL_BLOCKS = ("throttler", "zipper", "common")
MAP_TYPES = ("NoJob", "OneToOne", "ManyToOne", "OneToMany")
INT_LIMITS = ("maxWorkers", "nQueueLimitWorker", "maxNewWorkersPerCycle", "walltimeLimit",
              "maxSubmissionAttempts")

HARVESTER_HOME = "/opt/harvester"
WORKDIR = "/var/lib/harvester/workdir"


def _plugin(ref: tuple[str, str], **params: Any) -> dict[str, Any]:
    return {"name": ref[1], "module": ref[0], **params}


def worker_cores(queue: Queue) -> int:
    """Cores one worker (pilot) takes: whole nodes on HPC batch and GPU nodes, 8 elsewhere."""
    if queue.batch_system in ("slurm", "pbs") or queue.gpus_per_node:
        return queue.cores_per_node
    return min(8, queue.cores_per_node)


def push_mode(site: Site) -> bool:
    """HPC compute nodes cannot reach PanDA: Harvester fetches jobs and moves data (push)."""
    return site.kind == "hpc"


def queue_block(site: Site, queue: Queue) -> dict[str, Any]:
    """One queue's block of panda_queueconfig.json."""
    stock = STOCK[queue.batch_system]
    cores = worker_cores(queue)
    max_workers = max(queue.cores // cores, 1)
    pool = queue.harvester.standing_pool
    push = push_mode(site) and not pool
    block: dict[str, Any] = {
        "prodSourceLabel": "user" if queue.workflow_classes == ["analysis"] else "managed",
        "mapType": "OneToOne" if push else "NoJob",
        "truePilot": not push,
        "maxWorkers": pool or max_workers,
        "nQueueLimitWorker": pool or max(1, min(queue.max_queued, max_workers // 5)),
        "maxNewWorkersPerCycle": min(100, pool or max_workers),
        "maxSubmissionAttempts": 3,
        "walltimeLimit": int(queue.max_walltime_h * 3600),
    }
    if push:
        block["useJobLateBinding"] = True
    block["preparator"] = _preparator(site, push)
    block["submitter"] = _submitter(site, queue, stock["submitter"], cores)
    block["workerMaker"] = _worker_maker(queue, cores, pool)
    block["messenger"] = _messenger()
    block["stager"] = _stager(site, push)
    block["monitor"] = _plugin(stock["monitor"], **(
        {"cancelUnknown": False, "heldTimeout": 3600} if queue.batch_system == "htcondor"
        else _k8s_config(queue)))
    block["sweeper"] = _plugin(stock["sweeper"], **_k8s_config(queue))
    if pool:
        block["throttler"] = _plugin(EPIC["pool_throttler"], targetFile=_pool_file(queue),
                                     targetWorkers=0, maxPool=pool)
    elif not site.queue_pledged(queue):
        block["throttler"] = _plugin(COMMON["simple_throttler"], rulesForMissed=[
            {"level": "pq", "timeWindow": 10, "maxMissed": 10}])
    return block


def _pool_file(queue: Queue) -> str:
    return str(pool_target_path(queue.name))


def _k8s_config(queue: Queue) -> dict[str, Any]:
    if queue.batch_system != "kubernetes":
        return {}
    return {"k8s_config_file": f"{HARVESTER_HOME}/etc/k8s/{queue.name.lower()}.kubeconfig"}


def _preparator(site: Site, push: bool) -> dict[str, Any]:
    if not push:  # pilots stage in themselves
        return _plugin(COMMON["dummy_preparator"])
    return _plugin(COMMON["rucio_preparator"], rucioEnv=f"{HARVESTER_HOME}/etc/rucio.cfg",
                   defaultDest=site.rse("DISK"), timeout=1800)


def _stager(site: Site, push: bool) -> dict[str, Any]:
    if not push:
        return _plugin(COMMON["dummy_stager"])
    disk = site.rse("DISK")
    return _plugin(COMMON["rucio_stager"], scopeForTmp="epic", srcRSE=disk, dstRSE_Out=disk,
                   dstRSE_Log=disk)


def _messenger() -> dict[str, Any]:
    # every queue, Kubernetes ones included, as upstream's cloud example: Harvester 0.7.5's
    # K8sMessenger cannot be constructed (its __init__ calls get_pods_info() without the
    # label_selector it requires), so a queue naming it would never submit a worker
    return _plugin(COMMON["shared_file_messenger"], jobSpecFileFormat="cgi",
                   accessPoint=f"{WORKDIR}/${{harvesterID}}/${{_workerID_3.2}}/${{workerID}}")


def _submitter(site: Site, queue: Queue, ref: tuple[str, str], cores: int) -> dict[str, Any]:
    h = queue.harvester
    common = {"nCorePerNode": queue.cores_per_node, "nCore": cores,
              "logDir": "/var/log/harvester/batch", "tokenDir": f"{HARVESTER_HOME}/tokens/epic"}
    if queue.batch_system == "htcondor":
        return _plugin(ref, **common, templateFile=f"{HARVESTER_HOME}/etc/epic/htcondor_pilot.sdf",
                       condorSchedd=h.schedd, condorPool=h.schedd and f"{h.schedd}:9619",
                       useSpool=False, nProcesses=4)
    if queue.batch_system in ("slurm", "pbs"):
        return _plugin(ref, **common, localQueueName=h.partition or "batch",
                       templateFile=f"{HARVESTER_HOME}/etc/epic/{queue.batch_system}_pilot.sh")
    return _plugin(ref, nProcesses=4, **_k8s_config(queue),
                   k8s_yaml_file=f"{HARVESTER_HOME}/etc/epic/k8s_pilot_job.yaml",
                   tokenDir=common["tokenDir"])


def _worker_maker(queue: Queue, cores: int, pool: int) -> dict[str, Any]:
    if not pool:
        return _plugin(COMMON["simple_worker_maker"], jobAttributesToUse=["nCore", "minRamCount"])
    return _plugin(EPIC["pool_worker_maker"], poolName=queue.name, nCore=cores,
                   minRamCount=int(cores * queue.memory_per_core_gb * 1000),
                   maxWalltime=int(queue.max_walltime_h * 3600), targetFile=_pool_file(queue))


def site_queueconfig(site: Site) -> dict[str, Any]:
    return {queue.name: queue_block(site, queue) for queue in site.queues}


def harvester_cfg_fragment(site: Site) -> str:
    """The per-site part of panda_harvester.cfg (merge into Harvester's stock template)."""
    queues = "\n".join(f" {q.name}" for q in site.queues)
    pools = sum(q.harvester.standing_pool for q in site.queues)
    return (
        f"# panda_harvester.cfg fragment for {site.name} ({site.institution}).\n"
        "# Generated by `epic-wfms sites harvester-config`; do not edit by hand.\n"
        "# Merge into Harvester's templates/panda/panda_harvester.cfg.rpmnew.template.\n\n"
        "[master]\n"
        f"harvester_id = epic-{site.name.lower().replace('_', '-')}\n\n"
        "[qconf]\n"
        "configFile = panda_queueconfig.json\n"
        "configFromCacher = False\n"
        f"queueList =\n{queues}\n"
        "updateInterval = 600\n"
        "checkInterval = 5\n\n"
        "[submitter]\n"
        "nThreads = 3\n"
        # standing pools must be refilled quickly: check every 30 s where a site has one
        f"checkInterval = {30 if pools else 60}\n"
        f"maxNewWorkers = {max(100, pools)}\n\n"
        "[monitor]\n"
        "nThreads = 3\n"
        f"checkInterval = {60 if pools else 300}\n"
    )


def render_site(site: Site) -> dict[str, str]:
    """Relative path -> file content for one site."""
    return {
        f"{site.name}/panda_queueconfig.json":
            json.dumps(site_queueconfig(site), indent=2) + "\n",
        f"{site.name}/panda_harvester.cfg": harvester_cfg_fragment(site),
    }


def render(catalogue: Catalogue, site_names: list[str] | None = None) -> dict[str, str]:
    files: dict[str, str] = {}
    for site in catalogue:
        if not site_names or site.name in site_names:
            files.update(render_site(site))
    return files


def write_configs(catalogue: Catalogue, out_dir: Path,
                  site_names: list[str] | None = None) -> list[Path]:
    written = []
    for rel, text in render(catalogue, site_names).items():
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def stale_files(catalogue: Catalogue, out_dir: Path) -> list[str]:
    """Generated files that are missing or differ from what the catalogue gives now."""
    return [rel for rel, text in render(catalogue).items()
            if not (Path(out_dir) / rel).exists() or (Path(out_dir) / rel).read_text() != text]


def validate_queueconfig(data: dict[str, Any]) -> list[str]:
    """Check a panda_queueconfig.json as Harvester's QueueConfigMapper would load it."""
    problems = []
    for name, block in data.items():
        if not isinstance(block, dict):
            problems.append(f"{name}: a queue is a JSON object")
            continue
        for key in MANDATORY_BLOCKS:
            if key not in block:
                problems.append(f"{name}: missing mandatory plugin section {key!r}")
        for key, value in block.items():
            if key in MANDATORY_BLOCKS + OPTIONAL_BLOCKS and key != "common":
                if not isinstance(value, dict) or "module" not in value or "name" not in value:
                    problems.append(f"{name}.{key}: a plugin section needs 'module' and 'name'")
                elif (value["module"], value["name"]) not in KNOWN_PLUGINS:
                    problems.append(f"{name}.{key}: unknown plugin {value['module']}."
                                    f"{value['name']}")
                else:
                    problems += [f"{name}.{key}: {value['name']} needs {needed!r}"
                                 for needed in REQUIRED_KEYS.get(value["name"], ())
                                 if needed not in value]
        if block.get("mapType", "OneToOne") not in MAP_TYPES:
            problems.append(f"{name}.mapType: {block.get('mapType')!r}, allowed {MAP_TYPES}")
        for key in INT_LIMITS:
            if key in block and (not isinstance(block[key], int) or block[key] < 0):
                problems.append(f"{name}.{key}: must be a non-negative integer")
    return problems
