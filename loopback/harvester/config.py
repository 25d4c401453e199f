"""What the loopback Harvester reads: ``panda_harvester.cfg``, its queue configuration, and
the queue records CRIC would publish.

``panda_harvester.cfg`` is Harvester's own template (installed with it from the upstream
source) with, merged on top, the per-site fragment ``epic-wfms sites harvester-config``
generates for the E1 sites, then what differs on loopback: paths, the PanDA server's URL and
OIDC token, short agent cycles, one thread per agent, no proxy certificates.

The queues: the loopback PanDA server's queues (``BNL_EPIC_PROMPT`` at ``BNL_DISK``...) are
the catalogue's E1 prompt queues. Each is given the block our generator makes for the catalogue
queue it stands for (the queue of that name if the catalogue serves it the same way, standing
pool or not; else, at the site owning the queue's storage, the streaming queue with a
standing pool, or for a worker per job the production queue), with two loopback changes:
this machine's batch system (``epic_harvester.local_batch``: real Pilot 3 processes) instead
of the site's, and the worker directories, pool target files and limits under the harness's
work directory.
"""

from __future__ import annotations

import getpass
import grp
import os
from pathlib import Path
from typing import Any

from epic_wfms.sites.catalogue import Catalogue
from epic_wfms.sites.harvester import EPIC, queue_block
from epic_wfms.sites.harvester_cfg import merge_cfg
from epic_wfms.sites.models import Queue, Site
from loopback.common import HarnessError

TEMPLATE = "panda_harvester.cfg.rpmnew.template"
QUEUE_CONFIG = "panda_queueconfig.json"
CRIC_QUEUES = "panda_queues.json"
# agents that have nothing to do for pull-mode queues run rarely
IDLE_AGENTS = ("jobfetcher", "preparator", "stager", "eventfeeder")


def catalogue_queue(catalogue: Catalogue, panda_queue: str, ddm: str,
                    standing: bool) -> tuple[Site, Queue]:
    """The catalogue queue a loopback PanDA queue stands for (see the module docstring)."""
    for site, queue in catalogue.queues():  # the queue itself, if it is served the same way
        if queue.name == panda_queue and bool(queue.harvester.standing_pool) == standing:
            return site, queue
    site = next((s for s in catalogue if any(r.rse == ddm for r in s.storage)), None)
    if site is None:
        raise HarnessError(f"no site of the catalogue has the storage {ddm} of {panda_queue}",
                           fix="map the loopback queue to an RSE of an E1 site")
    if standing:
        found = [q for q in site.queues if q.harvester.standing_pool]
    else:
        found = [q for q in site.queues
                 if not q.harvester.standing_pool and "reconstruction" in q.workflow_classes]
    if not found:
        kind = "a standing-pool" if standing else "a reconstruction"
        raise HarnessError(f"{site.name} has no {kind} queue for {panda_queue}",
                           fix="add one to the site's catalogue file")
    return site, found[0]


def loopback_block(site: Site, queue: Queue, *, pilot: dict[str, Any], worker_root: Path,
                   pool_file: Path, max_workers: int, per_job: bool) -> dict[str, Any]:
    """The generated block of ``queue`` with this machine as its batch system."""
    block = queue_block(site, queue)
    for key in ("submitter", "monitor", "sweeper"):
        module, cls = EPIC[f"local_{key}"]
        block[key] = {"name": cls, "module": module}
    block["submitter"].update(pilot)
    if per_job:  # no idle pilot while no job is activated: one worker per job
        block["submitter"]["noPilotsWhenNoActiveJobs"] = True
    block["messenger"]["accessPoint"] = f"{worker_root}/${{harvesterID}}/${{workerID}}"
    for key in ("workerMaker", "throttler"):
        if "targetFile" in block.get(key, {}):
            block[key]["targetFile"] = str(pool_file)
    if "maxPool" in block.get("throttler", {}):
        block["throttler"]["maxPool"] = max_workers
    for key in ("maxWorkers", "nQueueLimitWorker", "maxNewWorkersPerCycle"):
        block[key] = min(block[key], max_workers)
    return block


def cric_record(panda_queue: str, ddm: str, harvester_id: str, vo: str) -> dict[str, Any]:
    """The queue as CRIC publishes it to Harvester's cacher (``panda_queues.json``)."""
    return {"nickname": panda_queue, "panda_resource": panda_queue, "siteid": panda_queue,
            "status": "online", "state": "ACTIVE", "type": "production", "workflow": "pull",
            "pilot_manager": "Harvester", "harvester": harvester_id, "vo_name": vo,
            "ddm": ddm, "corecount": 1, "maxrss": 64000, "maxtime": 86400,
            "maxwdir": 100000, "capability": "score", "catchall": "", "params": {}}


def harvester_cfg(template: str, fragments: list[str], *, harvester_id: str, home: Path,
                  queues: list[str], server_url: str, api_url: str, token_file: Path,
                  cycle_s: int) -> str:
    """Harvester's template + our per-site cfg fragments + the loopback settings."""
    cycle = {"sleepTime": cycle_s, "checkInterval": cycle_s}
    loopback: dict[str, dict[str, Any]] = {
        "master": {"uname": getpass.getuser(), "gname": grp.getgrgid(os.getgid()).gr_name,
                   "harvester_id": harvester_id},
        "db": {"engine": "sqlite", "database_filename": home / "harvester.db"},
        "fifo": {"database_filename": home / "fifo" / "$(TITLE)_fifo.db"},
        "pandacon": {"auth_type": "oidc", "auth_token": f"file:{token_file}",
                     "auth_origin": "epic.production", "ca_cert": False,
                     "pandaURL": server_url, "pandaURLSSL": server_url,
                     "server_api_url": api_url, "server_api_url_ssl": api_url,
                     "pandaCacheURL_W": server_url, "cache_api_url_ssl": api_url,
                     # read by CredManager and WorkSpec.set_log_file even with OIDC tokens
                     "cert_file": home / "no-cert.pem", "key_file": home / "no-key.pem",
                     "pandaCacheURL_R": f"{server_url}/cache"},
        "qconf": {"configFile": QUEUE_CONFIG, "queueList": queues, "updateInterval": 60,
                  "checkInterval": cycle_s},
        "credmanager": {k: None for k in ("moduleName", "className", "inCertFile",
                                          "outCertFile", "voms")},
        "cacher": {"data": [f"panda_queues.json||file://{home / CRIC_QUEUES}",
                            "resource_types.json||panda_server:get_resource_types",
                            "job_statistics.json||panda_server:get_job_stats",
                            "job_statistics_new.json||panda_server:get_job_stats_new",
                            "worker_statistics.json||panda_server:get_worker_stats_from_panda"],
                   "refreshInterval": 0, "sleepTime": cycle_s},
        "submitter": {**cycle, "lookupTime": cycle_s, "nThreads": 1},
        "monitor": {**cycle, "nThreads": 1},
        "propagator": {"sleepTime": cycle_s, "nThreads": 1},
        "sweeper": {**cycle, "nThreads": 1},
        "commandmanager": {"sleepTime": 30},
        **{agent: {"nThreads": 1, "sleepTime": 60} for agent in IDLE_AGENTS},
        "service_monitor": {"active": False}, "apfmon": {"active": False},
        "watcher": {"logFileNameList": "panda-db_proxy.log", "actions": ""},
    }
    return merge_cfg(template, *fragments, loopback, base_name=TEMPLATE)
