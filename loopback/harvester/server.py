"""Run the real Harvester (pandaharvester 0.7.5) on loopback against the local PanDA server.

What is real: Harvester's master process (``pandaharvester.harvesterbody.master``) and all its
agents (cacher, submitter with its worker adjuster, monitor, propagator, sweeper, command
manager...) on its own SQLite database, reading the configuration our generator makes for the
E1 queues, calling the loopback PanDA server's API with an OIDC token (production role);
ePIC's plugins inside it (standing pool, ``epic_harvester.local_batch``); every worker a real
Pilot 3 in its own PID namespace that takes its job from PanDA (pull mode), runs the payload
and reports back. What differs from a site: this machine is the batch system, the queue
descriptions CRIC would serve are files, and the agents cycle every few seconds.

Safety: the master runs in its own session (on SIGTERM it SIGKILLs itself, and its process
group if its parent is init); pilots run in their own sessions and PID namespaces and outlive
the master, so ``stop()`` kills every process carrying this instance's worker marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from epic_wfms.sites import load_catalogue
from epic_wfms.sites.catalogue import Catalogue
from epic_wfms.sites.harvester import harvester_cfg_fragment, validate_queueconfig
from epic_wfms.sites.harvester_workers import HarvesterWorker, read_workers
from epic_wfms.sites.standing_pool import pool_target_path, write_pool_target
from loopback.common import PLUGINS, HarnessError, stop_process_group
from loopback.harvester.config import (
    CRIC_QUEUES,
    QUEUE_CONFIG,
    TEMPLATE,
    catalogue_queue,
    cric_record,
    harvester_cfg,
    loopback_block,
)
from loopback.harvester.install import default_venv, ensure_venv, site_packages, template
from loopback.panda.pilot import (
    ensure_pilot,
    pilot_command,
    pilot_environment,
    write_fastpath_transformation,
    write_site_description,
    write_transformation,
)
from loopback.panda.server import COMMON_CFG, LocalPandaServer

MARKER = "EPIC_WORKER"  # set by epic_harvester.local_batch on every worker: <harvesterID>/<id>
# a standing pilot keeps asking for jobs (Pilot 3 waits 60 s after an empty answer)
STANDING_PILOT_ARGS = ("--getjobrequests", "100000", "--getjobfailures", "100000")


@dataclass
class LocalHarvester:
    """Harvester for the loopback PanDA server's queues.

    ``pools`` maps each PanDA queue Harvester serves to its standing pool's target (workers
    kept alive, each a pilot taking job after job) or None for a worker per activated job
    (a pilot that runs one job). ``stage()`` makes input files visible to the pilots.
    """

    server: LocalPandaServer
    workdir: Path
    pools: dict[str, int | None]
    venv: Path = field(default_factory=default_venv)
    pilot_python: str = sys.executable
    max_workers: int = 3  # per queue: pilots are real processes on a small machine
    cycle_s: int = 5  # agents' sleep and check intervals
    timefloor_min: int = 60  # how long a standing pilot keeps taking jobs
    # RSE name -> its directory on this machine: the pilots of a queue whose storage is one
    # of them read inputs from and write outputs to the RSE (Rucio's paths); other queues'
    # inputs are made visible by stage()
    rse_roots: dict[str, Path] = field(default_factory=dict)
    # tests: per-attempt faults of the reco payload (loopback.panda.fault_injection markers)
    fault_markers: Path | None = None
    # the installation's configuration for the fast path's worker jobs (``epic-fastpath``)
    fastpath_config: Path | None = None
    harvester_id: str = field(default_factory=lambda: f"epic-loopback-{uuid.uuid4().hex[:6]}")
    catalogue: Catalogue = field(default_factory=load_catalogue)
    _proc: subprocess.Popen | None = None

    # ---- paths ---------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        """``PANDA_HOME``: etc/panda (configuration), log/, harvester.db."""
        return self.workdir / "home"

    @property
    def db_path(self) -> Path:
        return self.home / "harvester.db"

    def storage(self, queue: str) -> Path:
        """Where the queue's input files are visible by LFN (the site's disk, for copytool mv)."""
        return self.workdir / "storage" / queue

    def pool_file(self, queue: str) -> Path:
        return pool_target_path(queue, self.workdir / "pools")

    def worker_dir(self, worker_id: int) -> Path:
        return self.workdir / "workers" / self.harvester_id / str(worker_id)

    def log(self, name: str) -> str:
        """One of Harvester's logs (``panda-submitter.log``, ...), '' if not written yet."""
        path = self.home / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> LocalHarvester:
        ensure_venv(self.venv)
        for queue in self.pools:
            if queue not in self.server.queues:
                raise HarnessError(f"the loopback PanDA server has no queue {queue}",
                                   fix=f"use one of {sorted(self.server.queues)}")
        self._write_configuration()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PANDA", "PYTHONPATH", "VIRTUAL_ENV", "X509"))}
        packages = site_packages(self.venv)
        env.update(PANDA_HOME=str(self.home), TZ="UTC", PYTHONPATH=":".join(
            [str(packages / "pandacommon"), str(packages), str(PLUGINS / "harvester")]))
        out = open(self.workdir / "master.out", "wb")  # noqa: SIM115 (outlives this call)
        self._proc = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-m", "pandaharvester.harvesterbody.master",
             "--foreground"], cwd=self.home, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(timeout_s)
        return self

    def stop(self) -> None:
        """Stop the master, then SIGKILL every worker process it started (they outlive it)."""
        if self._proc is not None:
            stop_process_group(self._proc, grace_s=10)
            self._proc = None
        for _ in range(10):
            pids = self.worker_processes()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def __enter__(self) -> LocalHarvester:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what Harvester does ---------------------------------------------------------------
    def set_pool_target(self, queue: str, target: int, run_number: int | None = None) -> None:
        """Publish the standing pool's target, as epic-wfms does at run_imminent/end_run."""
        if queue not in self.pools or self.pools[queue] is None:
            raise HarnessError(f"{queue} has no standing pool here",
                               fix="start LocalHarvester with a pool target for it")
        write_pool_target(self.pool_file(queue), target, run_number)

    def stage(self, queue: str, files: dict[str, Path]) -> None:
        """Make input replicas (LFN -> path) visible to the queue's pilots."""
        for lfn, path in files.items():
            if Path(lfn).name != lfn or lfn.startswith("."):
                raise HarnessError(f"not a file name: {lfn!r}", fix="pass LFNs")
            link = self.storage(queue) / lfn
            link.unlink(missing_ok=True)
            link.symlink_to(Path(path).resolve())

    def workers(self, queue: str | None = None) -> list[HarvesterWorker]:
        """Harvester's workers (newest first), from its database."""
        if not self.db_path.exists():
            return []
        return read_workers(self.db_path, queue)

    def worker_processes(self, worker_id: int | None = None) -> list[int]:
        """PIDs of this instance's worker processes (of one worker if given)."""
        prefix = f"{MARKER}={self.harvester_id}/"
        wanted = f"{prefix}{worker_id}".encode() if worker_id is not None else None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(v == wanted if wanted else v.startswith(prefix.encode()) for v in environ):
                found.append(int(entry.name))
        return found

    def pilot_pid(self, worker_id: int) -> int | None:
        """The worker's Pilot 3 main process (``python pilot.py``), if it runs."""
        for pid in sorted(self.worker_processes(worker_id)):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if len(argv) > 1 and argv[1].endswith(b"/pilot.py"):  # not unshare or sh
                    return pid
        return None

    def outputs(self, worker_id: int) -> dict[str, Path]:
        """Files the worker's pilot left in its job directories (outputs and log tarballs)."""
        return {p.name: p for p in self.worker_dir(worker_id).glob(
            "work/PanDA_Pilot3_*/*") if p.is_file()
                and not p.name.startswith(("curl_", "pilotlog"))}

    # ---- configuration ---------------------------------------------------------------------
    def _write_configuration(self) -> None:
        etc = self.home / "etc" / "panda"
        for d in (etc, self.home / "log", self.home / "fifo", self.workdir / "pilot",
                  self.workdir / "workers"):
            d.mkdir(parents=True, exist_ok=True)
        token_file = self.home / "token"
        token_file.write_text(self.server.identity("Epic Harvester", production=True).token)
        pilot_who = self.server.identity("Epic Pilot", production=True)
        (self.workdir / "pilot" / "token").write_text(pilot_who.token)
        transformations = self.workdir / "pilot" / "trf"
        write_transformation(transformations, self.fault_markers)
        if self.fastpath_config is not None:
            write_fastpath_transformation(transformations, self.fastpath_config)
        source = ensure_pilot()
        blocks, cric, sites = {}, {}, {}
        for queue, pool in self.pools.items():
            ddm = self.server.queues[queue]
            standing = pool is not None
            site_dir = self.workdir / "pilot" / queue
            rse_root = self.rse_roots.get(ddm)
            write_site_description(self.server, queue, site_dir,
                                   self.timefloor_min if standing else 0, rse_root)
            (self.storage(queue) / "dest").mkdir(parents=True, exist_ok=True)
            command = pilot_command(
                self.pilot_python, source, self.server, queue, site_dir=site_dir,
                work_dir="${workerDir}/work", stage_in=self.storage(queue),
                output_dir="${workerDir}/out", extra=STANDING_PILOT_ARGS if standing else (),
                rse_root=rse_root)
            environment = pilot_environment(pilot_who.auth_vo, token_dir=self.workdir / "pilot",
                                            site_dir=site_dir, transformations=transformations,
                                            python=self.pilot_python)
            site, source_queue = catalogue_queue(self.catalogue, queue, ddm, standing)
            sites[site.name] = site
            blocks[queue] = loopback_block(
                site, source_queue, pilot={"pilotCommand": command,
                                           "pilotEnvironment": environment},
                worker_root=self.workdir / "workers", pool_file=self.pool_file(queue),
                max_workers=self.max_workers, per_job=not standing)
            cric[queue] = cric_record(queue, ddm, self.harvester_id, self.server.vo)
            if standing:
                self.set_pool_target(queue, pool)
        problems = validate_queueconfig(blocks)
        if problems:
            raise HarnessError("the loopback queue configuration is invalid", "; ".join(problems),
                               "fix loopback/harvester/config.py")
        (etc / QUEUE_CONFIG).write_text(json.dumps(blocks, indent=1))
        (self.home / CRIC_QUEUES).write_text(json.dumps(cric, indent=1))
        (etc / "panda_common.cfg").write_text(COMMON_CFG.format(
            logdir=self.home / "log", level=os.environ.get("EPIC_HARVESTER_LOG_LEVEL", "DEBUG")))
        (etc / "panda_harvester.cfg").write_text(harvester_cfg(
            template(self.venv, TEMPLATE).read_text(),
            [harvester_cfg_fragment(site) for site in sites.values()],
            harvester_id=self.harvester_id, home=self.home, queues=list(self.pools),
            server_url=self.server.url, api_url=self.server.api_url, token_file=token_file,
            cycle_s=self.cycle_s))

    def _wait_ready(self, timeout_s: float) -> None:
        """Until Harvester's queue config mapper has registered every queue in its database;
        a queue it dropped fails the start with the mapper's own error lines."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                break
            problems = [line for line in self.log("panda-queue_config_mapper.log").splitlines()
                        if " ERROR " in line or "Omitted" in line]
            if problems:
                self.stop()
                raise HarnessError("Harvester dropped a queue of its configuration",
                                   "\n".join(problems[-5:]),
                                   f"read {self.home / 'etc/panda' / QUEUE_CONFIG}")
            if set(self.pools) <= self._registered_queues():
                return
            time.sleep(0.5)
        out = (self.workdir / "master.out").read_text(errors="replace")[-2000:]
        self.stop()
        raise HarnessError("Harvester did not come up",
                           f"its queues were not registered within {timeout_s:.0f} s: {out}",
                           f"read {self.home / 'log'}")

    def _registered_queues(self) -> set[str]:
        if not self.db_path.exists():
            return set()
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro",
                                                    uri=True, timeout=1)) as conn:
                return {row[0] for row in conn.execute("SELECT queueName FROM pq_table")}
        except sqlite3.Error:
            return set()
