"""``WorkloadExecutor`` on PanDA: each JobSpec becomes a PanDA job at the site's PanDA queue.

Used for the work epic-wfms itself decides (merges and the gather of a streaming run): the
job is submitted as production jobs are outside JEDI (``jediTaskID`` NULL), or under a given
JEDI task. Its input and output files are PanDA file records (LFN, dataset); the pilot stages
the inputs into the job's working directory and stages the output out to the queue's storage,
where ePIC's Adder plugin registers it in Rucio. Arguments that name a local replica of one of
the job's files are given to the payload as the bare LFN (the pilot's working directory).

Each attempt is recorded as our job record too (``jobs``, with PanDA's ``PandaID`` in
``panda_id``), as the local slots record theirs: the run report, the monitor's job pages,
provenance and the merge role's recovery read the same table whichever backend ran the job.
The job id this executor returns is the record's id.

Job states are PanDA's own, read back by polling (``poll()``, or a thread every
``poll_interval_s``) and mapped by ``states.our_job_status``: start listeners fire when a
pilot holds the job, ``on_done`` when PanDA reports it finished, failed or cancelled. A site
taken offline holds new jobs here (activated, not yet sent) until it is back; PanDA's queue
status itself is an admin setting (CRIC).
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from pandaclient import MiscUtils
from pandaclient.FileSpec import FileSpec
from pandaclient.JobSpec import JobSpec as PandaJobSpec
from sqlalchemy import select, update

from epic_wfms.lifecycle.job import JOB
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, ProvenanceRecord, utcnow
from epic_wfms.wfms.interface import (
    JobCallback,
    JobResult,
    JobSpec,
    JobStatus,
    StartCallback,
)
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import PandaError
from epic_wfms.wfms.panda.readback import job_error, job_exit_code, job_time
from epic_wfms.wfms.panda.states import PANDA_JOB_FINAL, our_job_status
from epic_wfms.wfms.records import define_activated


@dataclass
class _Open:
    """A job of this executor not yet ended: ``panda_id`` None while its site is offline."""

    spec: JobSpec
    on_done: JobCallback
    panda_id: int | None = None
    status: JobStatus = JobStatus.ACTIVATED


class PandaExecutor:
    def __init__(self, db: Database, connection: PandaConnection, queues: dict[str, str],
                 task_id: int | None = None, poll_interval_s: float | None = None,
                 vo: str = "epic", transformation: str = "epic-reco") -> None:
        """``queues`` maps our site names (``E1_BNL``) to PanDA queues; jobs belong to the
        JEDI task ``task_id`` if given, else to none (production jobs defined outside JEDI)."""
        self.db, self.connection, self.queues, self.vo = db, connection, dict(queues), vo
        self.transformation = transformation
        self.task_id = task_id
        self._lock = threading.Lock()
        self._open: dict[int, _Open] = {}  # our job id -> the job while it is not ended
        self._offline: set[str] = set()
        self._listeners: list[StartCallback] = []
        self._stop = threading.Event()
        self._thread = None
        if poll_interval_s:
            self._thread = threading.Thread(target=self._poll_loop, args=(poll_interval_s,),
                                            name="panda-poll", daemon=True)
            self._thread.start()

    # ---- WorkloadExecutor --------------------------------------------------------------
    def submit(self, spec: JobSpec, on_done: JobCallback) -> int:
        return self.submit_many([(spec, on_done)])[0]

    def submit_many(self, jobs: list[tuple[JobSpec, JobCallback]]) -> list[int]:
        """Record the attempts (activated) with one INSERT, then send each to PanDA unless
        its site is offline; our job ids in order."""
        for spec, _ in jobs:
            if spec.site not in self.queues:
                raise ValueError(f"unknown site {spec.site!r}; PanDA queues are configured "
                                 f"for {sorted(self.queues)}")
        ids = define_activated(self.db, [spec for spec, _ in jobs], job_parameters)
        with self._lock:
            for job_id, (spec, on_done) in zip(ids, jobs, strict=True):
                self._open[job_id] = _Open(spec, on_done)
            to_send = [i for i, (spec, _) in zip(ids, jobs, strict=True)
                       if spec.site not in self._offline]
        for job_id in to_send:
            self._send(job_id)
        return ids

    def add_start_listener(self, listener: StartCallback) -> None:
        self._listeners.append(listener)

    def backlog(self, site: str) -> int:
        with self._lock:
            return sum(1 for job in self._open.values() if job.spec.site == site)

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
            held = [i for i, job in self._open.items()
                    if job.spec.site == site and job.panda_id is None]
        for job_id in held:
            self._send(job_id)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- PanDA -------------------------------------------------------------------------
    def panda_id(self, job_id: int) -> int | None:
        """The PandaID of one of our open jobs (None while its site is offline)."""
        with self._lock:
            return self._open[job_id].panda_id

    def _send(self, job_id: int) -> None:
        with self._lock:
            spec = self._open[job_id].spec
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
        with self.db.session() as session:
            session.execute(update(JobRecord).where(JobRecord.id == job_id).values(
                panda_id=panda_id))
        with self._lock:
            self._open[job_id].panda_id = panda_id

    def poll(self) -> int:
        """Read PanDA's job states once; fire callbacks; returns how many jobs ended."""
        with self._lock:
            sent = {job.panda_id: job_id for job_id, job in self._open.items()
                    if job.panda_id is not None}
        ended = 0
        for job in self.connection.jobs(sorted(sent)):
            if job is None:
                continue
            job_id = sent[int(job.PandaID)]
            status = our_job_status(job.jobStatus)
            with self._lock:
                known = self._open[job_id]
                old, known.status = known.status, status
            if status is JobStatus.RUNNING and old is JobStatus.ACTIVATED:
                self._started(job_id, known.spec, job_time(job.startTime) or utcnow())
            if job.jobStatus in PANDA_JOB_FINAL:
                ended += 1
                self._ended(job_id, known, job, status)
        return ended

    def _started(self, job_id: int, spec: JobSpec, started: datetime) -> None:
        with self.db.session() as session:
            session.execute(update(JobRecord).where(
                JobRecord.id == job_id, JOB.where(JobRecord.status, JobStatus.RUNNING),
            ).values(status=JobStatus.RUNNING, started_at=started))
        for listener in self._listeners:
            listener([(job_id, spec)], started)

    def _ended(self, job_id: int, known: _Open, job, status: JobStatus) -> None:
        """Record the attempt's end (with provenance when it finished: the Adder registered
        its output) and tell the caller."""
        spec = known.spec
        error = job_error(job)
        started, ended = job_time(job.startTime), job_time(job.endTime) or utcnow()
        with self.db.session() as session:
            record = session.get(JobRecord, job_id)
            if JOB.allowed(record.status, status):
                record.status, record.ended_at = status, ended
                record.started_at = record.started_at or started
                record.exit_code, record.error = job_exit_code(job), error
                if status is JobStatus.FINISHED:
                    session.add_all(ProvenanceRecord(job_id=job_id, input_name=name,
                                                     output_name=spec.output)
                                    for name in spec.inputs)
        with self._lock:
            self._open.pop(job_id, None)
        known.on_done(JobResult(job_id, spec, status, started, ended, job_exit_code(job),
                                error, {"panda_id": int(job.PandaID),
                                        "panda_status": job.jobStatus,
                                        "output_registered": status is JobStatus.FINISHED}))

    def status(self, job_id: int) -> JobStatus:
        """Our record's status of one of this executor's jobs."""
        with self.db.session() as session:
            return JobStatus(session.scalar(select(JobRecord.status).where(
                JobRecord.id == job_id)))

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

