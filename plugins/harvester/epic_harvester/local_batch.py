"""This machine as Harvester's batch system: each worker is a Pilot 3 process, isolated.

Three Harvester plugins (queue-config blocks ``submitter``, ``monitor``, ``sweeper``) that do
for a single host what ``HTCondorSubmitter``/``HTCondorMonitor``/``HTCondorSweeper`` do for
a pool: start a worker, tell Harvester what became of it, kill and clean it up.

A worker is the block's ``pilotCommand`` (argv; ``${workerDir}`` and ``${workerID}`` are
replaced) started in the worker's directory (the messenger's access point) under
``sh`` -> the command, in its own session and **its own PID namespace**
(``unshare --pid --fork --mount-proc``, with ``--map-root-user`` when not root) and with
``PILOT_NOKILL=1``: Pilot 3 kills every orphan of its user when it ends, and must neither see
nor be able to signal anything outside its worker. A worker is never started without that
isolation (the submission fails permanently instead). The ``sh`` wrapper records the
command's exit code in ``<workerDir>/worker.exit``; the worker's environment carries
``EPIC_WORKER=<harvesterID>/<workerID>``, by which the monitor and the sweeper recognise its
processes (a batch ID alone could name a recycled process group).

Worker states (Harvester's ``WorkSpec.ST_*``): submitted (Harvester, at submission) ->
running (its processes are alive) -> finished (exit 0) / failed (any other exit, a signal,
or processes gone without an exit code). Environment given to the command: the block's
``pilotEnvironment`` plus ``HARVESTER_ID``, ``HARVESTER_WORKER_ID`` (the pilot reports them
to PanDA, which links the worker to the jobs it runs), ``PANDA_JSID`` (``harvester-<id>``,
as Harvester's K8s submitter sets it), ``PILOT_HOME``, ``PILOT_NOKILL``;
Harvester's own ``PANDA*``/``PYTHONPATH``/``X509*`` settings are not passed on.

The PandaIDs a worker ran are read from the pilot's job directories (``PanDA_Pilot-<id>``
under ``${workerDir}``) and written to the messenger's ``worker_pandaids.json``, which
Harvester's monitor reads for pull-mode workers (``SharedFileMessenger.get_panda_ids``) to
record the worker-job relation in its ``jw_table``. In pull mode Harvester holds no jobs, and
its sweeper deletes relations to jobs it does not hold every cycle
(``delete_orphaned_job_info``), so the monitor also keeps them in the worker's own record
(``workAttributes["pandaIDs"]``); PanDA keeps the relation for good
(``harvester_rel_jobs_workers``, recorded when the pilot fetches a job with its worker ID).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

from pandaharvester.harvesterconfig import harvester_config
from pandaharvester.harvestercore import core_utils
from pandaharvester.harvestercore.plugin_base import PluginBase
from pandaharvester.harvestercore.work_spec import WorkSpec
from pandaharvester.harvestersweeper.base_sweeper import BaseSweeper

_log = core_utils.setup_logger("epic_local_batch")

EXIT_FILE = "worker.exit"
LOG_FILE = "worker.log"
MARKER = "EPIC_WORKER"
# sh runs the command ("$@"), then records its exit code (128+N: killed by signal N)
_WRAPPER = ('"$@"; code=$?; echo "$code" > "$EPIC_WORKER_EXIT.tmp"; '
            'mv "$EPIC_WORKER_EXIT.tmp" "$EPIC_WORKER_EXIT"; exit "$code"')
_NOT_PASSED_ON = ("PANDA", "PYTHONPATH", "X509", "HARVESTER", "VIRTUAL_ENV")
_JOB_DIR = re.compile(r"^PanDA_Pilot-(\d+)$")

# workers this Harvester process started: reaped here, or they stay zombies (and look alive)
_children: dict[int, subprocess.Popen] = {}
_children_lock = threading.Lock()


@functools.cache
def isolation() -> tuple[str, ...] | None:
    """The ``unshare`` prefix giving a worker its own PID namespace; None if unavailable
    (probed once per Harvester process)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    prefix = [unshare, "--pid", "--fork", "--mount-proc"]
    if os.getuid() != 0:
        prefix.insert(1, "--map-root-user")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    return tuple(prefix) if probe.returncode == 0 else None


def worker_marker(workspec: WorkSpec) -> str:
    return f"{harvester_config.master.harvester_id}/{workspec.workerID}"


def _expand(text: str, workspec: WorkSpec, worker_dir: str) -> str:
    return text.replace("${workerDir}", worker_dir).replace("${workerID}",
                                                             str(workspec.workerID))


def _members(pgid: int, marker: str) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid`` carrying ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if f"{MARKER}={marker}".encode() in environ:
            found.append(int(entry.name))
    return found


def _reap(pid: int) -> None:
    with _children_lock:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]


class LocalPilotSubmitter(PluginBase):
    """Start each worker as the queue's pilot command, isolated (see the module docstring).

    Block keys: ``pilotCommand`` (list of str, required), ``pilotEnvironment`` (dict)."""

    def __init__(self, **kwarg) -> None:
        self.pilotCommand: list[str] = []
        self.pilotEnvironment: dict[str, str] = {}
        PluginBase.__init__(self, **kwarg)
        self._isolation = isolation()

    def submit_workers(self, workspec_list: list[WorkSpec]) -> list[tuple[bool | None, str]]:
        log = self.make_logger(_log, method_name="submit_workers")
        results = []
        for workspec in workspec_list:
            try:
                results.append(self._submit(workspec))
            except OSError as error:  # temporary: Harvester retries up to maxSubmissionAttempts
                log.error(f"workerID={workspec.workerID}: {error}")
                results.append((None, f"cannot start the worker: {error}"))
        return results

    def _submit(self, workspec: WorkSpec) -> tuple[bool | None, str]:
        if not self.pilotCommand:
            return False, "queue config: the submitter needs pilotCommand (the pilot's argv)"
        if self._isolation is None:
            return False, ("no PID namespace for the worker (`unshare --pid --fork "
                           "--mount-proc` failed): refusing to start a pilot that could "
                           "signal other processes")
        worker_dir = workspec.get_access_point()
        Path(worker_dir).mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_PASSED_ON)}
        env.update({k: _expand(str(v), workspec, worker_dir)
                    for k, v in self.pilotEnvironment.items()})
        harvester_id = harvester_config.master.harvester_id
        env.update(HARVESTER_ID=harvester_id, PANDA_JSID=f"harvester-{harvester_id}",
                   HARVESTER_WORKER_ID=str(workspec.workerID), PILOT_HOME=worker_dir,
                   PILOT_NOKILL="1", EPIC_WORKER_EXIT=os.path.join(worker_dir, EXIT_FILE))
        env[MARKER] = worker_marker(workspec)
        argv = [_expand(str(arg), workspec, worker_dir) for arg in self.pilotCommand]
        with open(os.path.join(worker_dir, LOG_FILE), "ab") as out:
            child = subprocess.Popen([*self._isolation, "sh", "-c", _WRAPPER, "epic-worker",
                                      *argv], cwd=worker_dir, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        with _children_lock:
            _children[child.pid] = child
        workspec.batchID = str(child.pid)  # the worker's session and process group
        workspec.queueName = "local"
        workspec.computingElement = workspec.nodeID = socket.gethostname()
        workspec.set_work_attributes({"workerDir": worker_dir})
        return True, ""


class LocalPilotMonitor(PluginBase):
    """Report what became of each worker; publish the PandaIDs its pilot ran."""

    def check_workers(self, workspec_list: list[WorkSpec]) -> tuple[bool, list[tuple[str, str]]]:
        return True, [self._check(workspec) for workspec in workspec_list]

    def _check(self, workspec: WorkSpec) -> tuple[str, str]:
        worker_dir = workspec.get_access_point()
        self._publish_panda_ids(workspec, worker_dir)
        if not workspec.batchID:
            return WorkSpec.ST_failed, "worker has no batch ID (never started)"
        pgid = int(workspec.batchID)
        _reap(pgid)
        code = _exit_code(worker_dir)
        if code is None and _members(pgid, worker_marker(workspec)):
            workspec.nativeStatus = "running"
            return WorkSpec.ST_running, ""
        code = _exit_code(worker_dir) if code is None else code  # it may have just ended
        if code is None:
            workspec.nativeStatus = "lost"
            return WorkSpec.ST_failed, "worker processes are gone and left no exit code"
        workspec.nativeExitCode = code
        if code == 0:
            workspec.nativeStatus = "done"
            return WorkSpec.ST_finished, ""
        if code > 128:
            workspec.nativeStatus = f"killed by signal {code - 128}"
            return WorkSpec.ST_failed, f"pilot killed by signal {code - 128}"
        workspec.nativeStatus = f"exit {code}"
        return WorkSpec.ST_failed, f"pilot exited with code {code}"

    def _publish_panda_ids(self, workspec: WorkSpec, worker_dir: str) -> None:
        dirs = [p for depth in ("", "*/", "*/*/") for p in Path(worker_dir).glob(
            depth + "PanDA_Pilot-*")]  # <pilot workdir>/PanDA_Pilot3_<pid>_<t>/PanDA_Pilot-<id>
        ids = sorted({int(m.group(1)) for p in dirs if (m := _JOB_DIR.match(p.name))})
        if not ids:
            return
        workspec.set_work_attributes({"pandaIDs": ids})  # kept with the worker's record
        target = Path(worker_dir) / harvester_config.payload_interaction.pandaIDsFile
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(ids))
        tmp.replace(target)


def _exit_code(worker_dir: str) -> int | None:
    try:
        return int(Path(worker_dir, EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


class LocalPilotSweeper(BaseSweeper):
    """Kill a worker's processes (SIGKILL: an idle pilot ignores SIGTERM); remove its dir."""

    def kill_workers(self, workspec_list: list[WorkSpec]) -> list[tuple[bool, str]]:
        return [self._kill(workspec) for workspec in workspec_list]

    def _kill(self, workspec: WorkSpec) -> tuple[bool, str]:
        if not workspec.batchID:
            return True, "never started"
        pgid = int(workspec.batchID)
        for pid in _members(pgid, worker_marker(workspec)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pgid)
        return True, ""

    def sweep_worker(self, workspec: WorkSpec) -> tuple[bool, str]:
        self._kill(workspec)
        shutil.rmtree(workspec.get_access_point(), ignore_errors=True)
        return True, ""
