"""Embedded execution: per-site local worker slots running payloads in real processes.

``runner="standing"`` (default): each slot keeps a pilot process (wfms/pilot.py) that runs one
payload after another; ``runner="subprocess"``: a fresh ``python -m payload`` per job.

A slot takes the jobs waiting at its site together, up to ``jobs_per_pull`` (as a Harvester
worker of ``mapType`` ManyToOne or a multi-job pilot does): they start in one update, go to
the pilot back to back, and end in one transaction. One job per STF stays the bookkeeping
unit; a quiet site pulls one job at a time.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select as sql_select
from sqlalchemy import update

from epic_wfms.lifecycle.job import JOB
from epic_wfms.store.accounting import Usage, insert_usage
from epic_wfms.store.database import Database
from epic_wfms.store.outage import retry_while_down
from epic_wfms.store.schema import JobRecord, ProvenanceRecord, utcnow
from epic_wfms.wfms.interface import JobCallback, JobResult, JobSpec, JobStatus, StartCallback
from epic_wfms.wfms.records import define_activated
from epic_wfms.wfms.standing import JsonLinesProcess, ProcessEnded

_TAIL = 2000
JOBS_PER_PULL = 8  # jobs a slot takes together when its site has a backlog
STREAMING_USER = "epic-streaming"  # whose resource usage the streaming jobs are (R8.6)
log = logging.getLogger(__name__)


class LocalWorkerPool:
    """Per-site worker slots (threads, each with its pilot); job rows kept in the store like
    PanDA's jobs table."""

    def __init__(
        self,
        db: Database,
        slots: dict[str, int],
        timeout_s: float = 600.0,
        runner: str = "standing",
        jobs_per_pull: int = JOBS_PER_PULL,
        owner: str | None = None,
    ) -> None:
        if runner not in ("standing", "subprocess"):
            raise ValueError(f"runner {runner!r}: use 'standing' (pilots) or 'subprocess'")
        self.db = db
        self.owner = owner  # jobs.agent: the agent that runs them (streaming/ownership.py)
        self.runner = runner
        self.timeout_s = timeout_s
        self.jobs_per_pull = max(1, jobs_per_pull)
        self._local = threading.local()
        self._pilots: list[subprocess.Popen] = []
        self._queues: dict[str, queue.SimpleQueue[_Queued | None]] = {
            site: queue.SimpleQueue() for site in slots}
        self._online = {site: threading.Event() for site in slots}
        for event in self._online.values():
            event.set()
        self._backlog = dict.fromkeys(slots, 0)
        self._lock = threading.Lock()
        self._closed = False
        self._start_listeners: list[StartCallback] = []
        self._slots = [threading.Thread(target=self._slot, args=(site,), daemon=True,
                                        name=f"worker:{site}:{i}")
                       for site, n in slots.items() for i in range(n)]
        for thread in self._slots:
            thread.start()

    def add_start_listener(self, listener: StartCallback) -> None:
        self._start_listeners.append(listener)

    def sites(self) -> list[str]:
        return list(self._queues)

    def backlog(self, site: str) -> int:
        with self._lock:
            return self._backlog[site]

    def set_online(self, site: str, online: bool) -> None:
        (self._online[site].set if online else self._online[site].clear)()

    def submit(self, spec: JobSpec, on_done: JobCallback) -> int:
        return self.submit_many([(spec, on_done)])[0]

    def submit_many(self, jobs: list[tuple[JobSpec, JobCallback]]) -> list[int]:
        """Define and activate the jobs with one INSERT; their ids in the same order."""
        for spec, _ in jobs:
            if spec.site not in self._queues:
                raise ValueError(f"unknown site {spec.site!r}; known: {', '.join(self._queues)}")
        if self._closed:
            raise RuntimeError("the worker pool is shut down: no new jobs")
        ids = define_activated(self.db, [spec for spec, _ in jobs],
                               lambda spec: " ".join(spec.command), self.owner)
        with self._lock:
            for spec, _ in jobs:
                self._backlog[spec.site] += 1
        for job_id, (spec, on_done) in zip(ids, jobs, strict=True):
            self._queues[spec.site].put(_Queued(job_id, spec, on_done))
        return ids

    # -- a slot ------------------------------------------------------------------------------
    def _slot(self, site: str) -> None:
        if self.runner == "standing":
            self._pilot()  # started with the slot, as Harvester provisions workers ahead:
            # the first job does not wait for an interpreter and its imports
        waiting = self._queues[site]
        while (first := waiting.get()) is not None:
            self._online[site].wait()
            pulled = [first]
            while len(pulled) < self.jobs_per_pull:
                try:
                    more = waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # shutting down: leave the stop sign for the next pull
                    waiting.put(None)
                    break
                pulled.append(more)
            try:
                self._run_pulled(site, pulled)
            except Exception as error:  # the slot survives to run later jobs
                log.exception("running %d job(s) at %s failed", len(pulled), site)
                self._abandon(site, pulled, error)

    def _abandon(self, site: str, pulled: list[_Queued], error: Exception) -> None:
        """Jobs whose start or end could not be recorded (e.g. the store was unreachable) are
        reported failed, so their callers' retry policy takes over instead of waiting."""
        with self._lock:
            self._backlog[site] -= len(pulled)
        for job in pulled:
            try:
                job.on_done(JobResult(job.job_id, job.spec, JobStatus.FAILED, None, utcnow(),
                                      None, f"the worker pool could not run it: {error}"))
            except Exception:
                log.exception("handling the failure of job %d failed", job.job_id)

    def _run_pulled(self, site: str, pulled: list[_Queued]) -> None:
        """Start, run and end the pulled jobs; their start, end and callbacks wait out a
        database outage (a job's end is never lost to a blip: store/outage.py)."""
        started = utcnow()
        running = retry_while_down(lambda: self._start([job.job_id for job in pulled], started),
                                   f"starting {len(pulled)} job(s) at {site}", self._stopped)
        begun = [job for job in pulled if job.job_id in running]
        if begun:
            for listener in self._start_listeners:
                listener([(job.job_id, job.spec) for job in begun], started)
        outcomes = dict(zip([job.job_id for job in begun],
                            self._execute_all([job.spec for job in begun]), strict=True))
        results = retry_while_down(lambda: self._finish(pulled, outcomes, started),
                                   f"recording the end of {len(pulled)} job(s) at {site}",
                                   self._stopped)
        with self._lock:
            self._backlog[site] -= len(pulled)
        for job, result in zip(pulled, results, strict=True):
            try:
                retry_while_down(lambda job=job, result=result: job.on_done(result),
                                 f"handling the end of job {job.job_id}", self._stopped)
            except Exception:  # a bookkeeping failure must be visible, not vanish
                log.exception("handling the end of job %d (%s) failed", job.job_id, job.spec.kind)

    def _stopped(self) -> bool:
        """Outage retries give up once the pool is shut down (its jobs are recovered by the
        next start of their agent)."""
        return self._closed

    def _start(self, job_ids: list[int], started: datetime) -> set[int]:
        """activated -> running, except jobs an operator cancelled meanwhile (monitor)."""
        with self.db.session() as session:
            return set(session.scalars(update(JobRecord).where(
                JobRecord.id.in_(job_ids), JOB.where(JobRecord.status, JobStatus.RUNNING),
            ).values(status=JobStatus.RUNNING, started_at=started).returning(JobRecord.id)))

    def _finish(self, pulled: list[_Queued], outcomes: dict[int, _Outcome],
                started: datetime) -> list[JobResult]:
        """Record every end in one transaction; a job that ended meanwhile (an operator's kill)
        keeps its status and reason: the payload's end is reported as a failure."""
        results, used = [], []
        with self.db.session() as session:
            jobs = {job.id: job for job in session.scalars(sql_select(JobRecord).where(
                JobRecord.id.in_([q.job_id for q in pulled])))}
            for queued in pulled:
                job, spec = jobs[queued.job_id], queued.spec
                code, error, ended = outcomes.get(queued.job_id, (None, None, utcnow()))
                job.exit_code = code
                status = JobStatus.FINISHED if code == 0 else JobStatus.FAILED
                if not JOB.allowed(job.status, status):
                    status, error = JobStatus.FAILED, job.error or f"the job was {job.status}"
                else:
                    job.status, job.ended_at, job.error = status, ended, error
                    if status is JobStatus.FINISHED:
                        session.add_all(ProvenanceRecord(
                            job_id=job.id, input_name=name, output_name=spec.output)
                            for name in spec.inputs)
                results.append(JobResult(queued.job_id, spec, status, started, ended, code,
                                         error))
                if queued.job_id in outcomes:  # it ran on a slot: one core from start to end
                    used.append(Usage(f"job:{job.id}", spec.site, spec.site, "streaming",
                                      status.value, 1, started, max(ended, started),
                                      f"streaming_{spec.kind}", STREAMING_USER))
            insert_usage(session, used)
        return results

    # -- payloads ----------------------------------------------------------------------------
    def _execute_all(self, specs: list[JobSpec]) -> list[_Outcome]:
        if self.runner == "standing":
            return self._execute_in_pilot(specs)
        return [(*self._execute(spec), utcnow()) for spec in specs]

    def _execute(self, spec: JobSpec) -> tuple[int | None, str | None]:
        """A fresh ``python -m payload`` (the subprocess runner)."""
        try:
            proc = subprocess.run(
                spec.command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return None, f"payload exceeded {self.timeout_s:.0f}s and was killed"
        except OSError as error:
            return None, f"payload could not start: {error}"
        if proc.returncode != 0:
            return proc.returncode, (proc.stderr or proc.stdout)[-_TAIL:].strip()
        return 0, None

    def _pilot(self) -> JsonLinesProcess:
        """This worker slot's standing payload process, started on first use or after a crash."""
        pilot = getattr(self._local, "pilot", None)
        if pilot is None or not pilot.alive():
            pilot = JsonLinesProcess([sys.executable, "-m", "epic_wfms.wfms.pilot"], "pilot")
            self._local.pilot = pilot
            with self._lock:
                self._pilots.append(pilot)
        return pilot

    def _execute_in_pilot(self, specs: list[JobSpec]) -> list[_Outcome]:
        """All requests written back to back, replies read in order. A payload that kills
        or hangs its pilot fails alone: the jobs after it run in a fresh pilot."""
        if not specs:
            return []
        pilot = self._pilot()
        try:
            pilot.send(*({"payload": spec.payload, "args": spec.args} for spec in specs))
        except ProcessEnded as ended:
            return [(None, ended.what, utcnow()) for _ in specs]
        outcomes: list[_Outcome] = []
        for _spec in specs:
            try:
                reply = pilot.reply(self.timeout_s, "running the payload")
            except ProcessEnded as ended:
                outcomes.append((None, ended.what, utcnow()))
                return outcomes + self._execute_in_pilot(specs[len(outcomes):])
            code = reply["exit_code"]
            outcomes.append((code, reply["output"][-_TAIL:].strip() if code else None, utcnow()))
        return outcomes

    def shutdown(self) -> None:
        """Run what is queued, then stop the slots and their pilots."""
        self._closed = True
        for event in self._online.values():
            event.set()
        for site, waiting in self._queues.items():
            for _ in range(sum(1 for t in self._slots if t.name.startswith(f"worker:{site}:"))):
                waiting.put(None)
        for thread in self._slots:
            thread.join()
        for pilot in self._pilots:
            pilot.close()  # end of input: the pilot exits


class _Queued(NamedTuple):
    job_id: int
    spec: JobSpec
    on_done: JobCallback


_Outcome = tuple[int | None, str | None, datetime]  # exit code, error, end time
