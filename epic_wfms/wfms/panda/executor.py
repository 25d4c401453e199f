"""``WorkloadExecutor`` on PanDA: each JobSpec becomes a PanDA job at the site's PanDA queue.

Used for the work epic-wfms itself decides (merges and the gather of a streaming run): the
job is submitted as production jobs are outside JEDI (``jediTaskID`` NULL), or under a given
JEDI task. Its input and output files are PanDA file records (LFN, dataset); the pilot stages
the inputs into the job's working directory and stages the output out to the queue's storage,
where ePIC's Adder plugin registers it in Rucio. Arguments that name a local replica of one of
the job's files are given to the payload as the bare LFN (the pilot's working directory).

Job states are PanDA's own, read back by polling (``poll()``, or a thread every
``poll_interval_s``): ``on_done`` fires when PanDA reports finished/failed/cancelled, start
listeners when it reports running. A site taken offline holds new jobs here (activated, as
the interface says) until it is back; PanDA's queue status itself is an admin setting (CRIC).
"""

from __future__ import annotations

import shlex
import threading
from collections import deque
from datetime import UTC, datetime
from pathlib import PurePosixPath

from pandaclient import MiscUtils
from pandaclient.FileSpec import FileSpec
from pandaclient.JobSpec import JobSpec as PandaJobSpec

from epic_wfms.model import naming
from epic_wfms.wfms.interface import (
    JobCallback,
    JobResult,
    JobSpec,
    JobStatus,
    StartCallback,
)
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import PandaError
from epic_wfms.wfms.panda.readback import ERROR_FIELDS

_FINAL = {"finished": JobStatus.FINISHED, "failed": JobStatus.FAILED,
          "cancelled": JobStatus.CANCELLED, "closed": JobStatus.CANCELLED}
_WAITING = {"pending", "defined", "assigned", "waiting", "activated", "sent", "starting"}


class PandaExecutor:
    def __init__(self, connection: PandaConnection, queues: dict[str, str],
                 task_id: int | None = None, poll_interval_s: float | None = None,
                 vo: str = "epic", transformation: str = "epic-reco") -> None:
        """``queues`` maps our site names (``E1_BNL``) to PanDA queues; jobs belong to the
        JEDI task ``task_id`` if given, else to none (production jobs defined outside JEDI)."""
        self.connection, self.queues, self.vo = connection, dict(queues), vo
        self.transformation = transformation
        self.task_id = task_id
        self._lock = threading.Lock()
        self._jobs: dict[int, tuple[JobSpec, JobCallback, str]] = {}  # PandaID -> spec, cb, st
        self._held: dict[str, deque[tuple[int, JobSpec, JobCallback]]] = {}
        self._offline: set[str] = set()
        self._listeners: list[StartCallback] = []
        self._next_hold_id = -1
        self._stop = threading.Event()
        self._thread = None
        if poll_interval_s:
            self._thread = threading.Thread(target=self._poll_loop, args=(poll_interval_s,),
                                            name="panda-poll", daemon=True)
            self._thread.start()

    # ---- WorkloadExecutor --------------------------------------------------------------
    def submit(self, spec: JobSpec, on_done: JobCallback) -> int:
        if spec.site not in self.queues:
            raise ValueError(f"unknown site {spec.site!r}; PanDA queues are configured for "
                             f"{sorted(self.queues)}")
        with self._lock:
            if spec.site in self._offline:
                hold_id, self._next_hold_id = self._next_hold_id, self._next_hold_id - 1
                self._held.setdefault(spec.site, deque()).append((hold_id, spec, on_done))
                return hold_id
        return self._send(spec, on_done)

    def submit_many(self, jobs: list[tuple[JobSpec, JobCallback]]) -> list[int]:
        return [self.submit(spec, on_done) for spec, on_done in jobs]

    def add_start_listener(self, listener: StartCallback) -> None:
        self._listeners.append(listener)

    def backlog(self, site: str) -> int:
        with self._lock:
            queued = sum(1 for s, _, st in self._jobs.values()
                         if s.site == site and st not in _FINAL)
            return queued + len(self._held.get(site, ()))

    def sites(self) -> list[str]:
        return sorted(self.queues)

    def set_online(self, site: str, online: bool) -> None:
        if site not in self.queues:
            raise ValueError(f"unknown site {site!r}")
        with self._lock:
            if not online:
                self._offline.add(site)
                return
            self._offline.discard(site)
            held = list(self._held.pop(site, ()))
        for _, spec, on_done in held:
            self._send(spec, on_done)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- PanDA -------------------------------------------------------------------------
    def _send(self, spec: JobSpec, on_done: JobCallback) -> int:
        job = PandaJobSpec()
        job.VO, job.prodSourceLabel = self.vo, "managed"
        if self.task_id is not None:
            job.jediTaskID = job.jobDefinitionID = self.task_id
        job.jobName = f"epic.{spec.kind}.{spec.output}"
        job.transformation, job.computingSite = self.transformation, self.queues[spec.site]
        job.jobParameters = job_parameters(spec)
        job.attemptNr, job.maxAttempt = spec.attempt_nr, spec.max_attempts
        job.currentPriority = job.assignedPriority = 900
        dataset = output_dataset(spec)
        job.prodDBlock = job.destinationDBlock = dataset
        for lfn in spec.inputs:
            job.addFile(_file(lfn, "input", dataset))
        job.addFile(_file(spec.output, "output", dataset))
        rows = self.connection.api("submit a job to", "job/submit",
                                   {"jobs": MiscUtils.dump_jobs_json([job])}, data=True)
        try:
            panda_id = int(rows[0][0])
        except (TypeError, ValueError, IndexError) as exc:
            raise PandaError(f"PanDA returned no PandaID for {job.jobName}", why=str(rows)
                             ) from exc
        with self._lock:
            self._jobs[panda_id] = (spec, on_done, "defined")
        return panda_id

    def poll(self) -> int:
        """Read PanDA's job states once; fire callbacks; returns how many jobs are done."""
        with self._lock:
            open_ids = [i for i, (_, _, st) in self._jobs.items() if st not in _FINAL]
        done = 0
        for job in self.connection.jobs(open_ids):
            if job is None:
                continue
            panda_id, status = int(job.PandaID), job.jobStatus
            with self._lock:
                spec, on_done, old = self._jobs[panda_id]
                self._jobs[panda_id] = (spec, on_done, status)
            now = datetime.now(UTC)
            if status == "running" and old != "running":
                for listener in self._listeners:
                    listener([(panda_id, spec)], now)
            if status in _FINAL:
                done += 1
                diags = [str(getattr(job, k)) for k in ERROR_FIELDS
                         if getattr(job, k, None) not in (None, "", "NULL", "None")]
                error = "; ".join(diags) or None
                # a finished job's output was staged out and registered by the Adder
                on_done(JobResult(panda_id, spec, _FINAL[status], None, now,
                                  _int(job.transExitCode), error,
                                  {"panda_status": status,
                                   "output_registered": status == "finished"}))
        return done

    def status(self, panda_id: int) -> str:
        with self._lock:
            return self._jobs[panda_id][2]

    def _poll_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.poll()
            except PandaError:
                continue  # the server is briefly unreachable: try again next round


def job_parameters(spec: JobSpec) -> str:
    """The payload's command line as the pilot runs it in the job's working directory: a
    local replica path of one of the job's files becomes that file's LFN."""
    files = {*spec.inputs, spec.output}
    args = [PurePosixPath(a).name if "/" in a and PurePosixPath(a).name in files else a
            for a in spec.args]
    return shlex.join(["python", "-m", spec.payload, *args])


def output_dataset(spec: JobSpec) -> str:
    """``epic:swf.<run>.<site>.<kind>``: the dataset the job's output is attached to."""
    run = f"swf.{spec.run_number:06d}" if spec.run_number is not None else "swf.norun"
    return f"{naming.SCOPE}:{run}.{spec.site}.{spec.kind}"


def _file(lfn: str, kind: str, dataset: str) -> FileSpec:
    spec = FileSpec()
    spec.lfn, spec.type, spec.scope = lfn, kind, naming.SCOPE
    spec.dataset = spec.prodDBlock = spec.destinationDBlock = dataset
    spec.status = "ready" if kind == "input" else "unknown"
    return spec


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
