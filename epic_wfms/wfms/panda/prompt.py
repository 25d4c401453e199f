"""Prompt processing on PanDA: the ``process`` role when ``wfms.backend`` is ``panda``.

As at ePIC: each STF routed to an E1 is attached (by ingest) to the run's open subset dataset
``epic:swf.<run>.<E1>`` in Rucio; one JEDI prompt task per E1 and run reads that dataset file
by file (``runUntilClosed``) and makes one PanDA job per STF; pilots at the E1 queue run the
reco payload and ePIC's Adder plugin registers the output in Rucio. JEDI retries a failed job
up to the task's ``maxAttempt``. When the run's datasets are closed the tasks finish by
themselves.

What this role does on top, for each STF it is asked to process (``process_stf``):

- claims it (as the embedded role does) and stages it onto the E1's disk (a Rucio rule):
  JEDI's brokerage makes a job only for an STF with a replica at the queue's storage, so
  the processing gate (standby, catch-up, an operator's hold) acts through this rule;
- submits the run's prompt task for that E1 once its first STF is there (JEDI leaves a task
  on an empty open dataset pending for a long time);
- follows PanDA (a poller): each STF's jobs and attempts are read back into the store
  (``panda_tasks``, ``panda_jobs``), the STF's status follows its job (running, retrying,
  processed with its output, or failed once JEDI gave up), and ``stf_processed`` is
  published for merging, as the embedded role does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.lifecycle.job import JOB, JobKind, JobStatus
from epic_wfms.lifecycle.stf import PROCESSING, ProcessingStatus
from epic_wfms.lifecycle.stf import ProcessingStatus as P
from epic_wfms.store.integrity import report_issue
from epic_wfms.store.schema import (
    JobRecord,
    PandaJobRecord,
    PandaTaskRecord,
    ProvenanceRecord,
    StfRecord,
    utcnow,
)
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.processing import StfProcessing
from epic_wfms.wfms.panda import taskparams
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import PandaError, TaskParamsError
from epic_wfms.wfms.panda.readback import job_error, job_exit_code, job_time
from epic_wfms.wfms.panda.states import (
    JEDI_FILE_FINAL,
    JEDI_TASK_FINAL,
    PANDA_JOB_FAILED,
    PANDA_JOB_FINAL,
    PANDA_JOB_RUNNING,
    JediFileStatus,
    PandaJobStatus,
    our_job_status,
)
from epic_wfms.wfms.panda.submit import submit_tasks

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PromptSettings:
    """How this installation's prompt tasks look at its PanDA server."""

    queues: dict[str, str]  # E1 site -> PanDA queue
    transformation: str
    container_image: str | None
    max_attempts: int
    poll_interval_s: float


class PandaPromptProcessing(StfProcessing):
    def __init__(self, ctx: StreamingContext, connection: PandaConnection,
                 settings: PromptSettings) -> None:
        self.connection, self.settings = connection, settings
        self._tasks_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="panda-prompt-poll",
                                        daemon=True)
        super().__init__(ctx)

    # ---- what differs from the embedded role ---------------------------------------------
    def _listen_to_executor(self) -> None:
        """No local executor: PanDA's jobs are read back by the poller."""

    def recover(self, at_start: bool = True) -> None:
        """Nothing is lost with this process, at its start or when a peer dies (``adopt``):
        PanDA holds the jobs, the poller reads them back (tasks of this role's sites that
        are not final, from the store)."""

    def subscribe(self) -> None:
        super().subscribe()
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(timeout=10)

    def _launch_many(self, staged: list[tuple[m.StfWork, str | None, str | None]],
                     attempt: int = 1) -> None:
        """STFs now at their E1's disk: JEDI will make their jobs; make sure the run's
        prompt task exists. Failed stage-ins go to the retry policy (staged again)."""
        ready = []
        for work, path, error in staged:
            if path is None:
                self._retry_or_fail(work, attempt, f"stage-in failed: {error}")
            else:
                ready.append(work)
        for run_number, site in sorted({(w.run_number, w.site) for w in ready}):
            self.ensure_task(run_number, site)

    # ---- the prompt tasks ------------------------------------------------------------------
    def ensure_task(self, run_number: int, site: str) -> int:
        """The run's prompt task at ``site``: submitted once, its id kept in the store."""
        with self._tasks_lock:
            known = self._task_of(run_number, site)
            if known is not None:
                return known
            params = taskparams.prompt_task(run_number, site, taskparams.TaskOptions(
                site=self.settings.queues[site], container_image=self.settings.container_image,
                max_attempt=self.settings.max_attempts,
                extra={"transPath": self.settings.transformation}))
            try:
                [record] = submit_tasks([params], self.connection, self.ctx.db)
            except TaskParamsError:  # submitted meanwhile by another process of this role
                known = self._task_of(run_number, site)
                if known is None:
                    raise
                return known
            log.info("prompt task %d submitted for run %d at %s", record.jedi_task_id,
                     run_number, site)
            return record.jedi_task_id

    def _task_of(self, run_number: int, site: str) -> int | None:
        with self.ctx.db.session() as session:
            return session.scalar(select(PandaTaskRecord.jedi_task_id).where(
                PandaTaskRecord.kind == "prompt", PandaTaskRecord.run_number == run_number,
                PandaTaskRecord.site == site, PandaTaskRecord.server ==
                self.connection.settings.url))

    # ---- following PanDA ---------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self.poll()
            except PandaError as error:  # the server is briefly unreachable: next round
                log.warning("reading PanDA back failed: %s", error)
            except Exception:
                log.exception("following the prompt tasks failed")

    def poll(self) -> int:
        """Read every open prompt task of this role's sites back once; returns how many STFs
        changed state."""
        with self.ctx.db.session() as session:
            tasks = list(session.scalars(select(PandaTaskRecord).where(
                PandaTaskRecord.kind == "prompt", PandaTaskRecord.site.in_(self.sites),
                PandaTaskRecord.server == self.connection.settings.url,
                PandaTaskRecord.status.not_in(JEDI_TASK_FINAL))))
            open_tasks = [(t.jedi_task_id, t.run_number, t.site) for t in tasks]
        return sum(self._follow(*task) for task in open_tasks)

    def _follow(self, task_id: int, run_number: int, site: str) -> int:
        details = self.connection.task_details(task_id)
        task_status = details.get("status") or "unknown"
        final_files = self._final_file_states(task_id)
        jobs = self._jobs(task_id)
        self._record_jobs(task_id, task_status, jobs, site, run_number)
        by_stf: dict[str, list] = {}
        for job in jobs:
            for lfn in _files(job, "input"):
                by_stf.setdefault(lfn, []).append(job)
        return self._advance(run_number, site, by_stf, final_files)

    def _final_file_states(self, task_id: int) -> dict[str, str]:
        """JEDI's own verdict per input file: ``finished`` or ``failed`` once it gave up."""
        states = {}
        for dataset in self.connection.files_in_datasets(task_id):
            for f in dataset.get("files", []):
                if f.get("status") in JEDI_FILE_FINAL:
                    states[f["lfn"]] = f["status"]
        return states

    def _jobs(self, task_id: int) -> list:
        """The task's jobs not yet known to be final in our store (PanDA's final states do
        not change, so each job is read until it ends)."""
        ids = set(self.connection.job_ids(task_id))
        with self.ctx.db.session() as session:
            done = set(session.scalars(select(PandaJobRecord.panda_id).where(
                PandaJobRecord.jedi_task_id == task_id,
                PandaJobRecord.status.in_(PANDA_JOB_FINAL))))
        return [j for j in self.connection.jobs(sorted(ids - done)) if j is not None]

    def _record_jobs(self, task_id: int, task_status: str, jobs: Iterable, site: str,
                     run_number: int) -> None:
        """PanDA's view (``panda_tasks``, ``panda_jobs``) and each attempt as our job record
        (``jobs``, with its PandaID): what the run report, the monitor and provenance read,
        whichever backend ran the job."""
        with self.ctx.db.session() as session:
            task = session.get(PandaTaskRecord, task_id)
            task.status, task.updated_at = task_status, utcnow()
            for job in jobs:
                inputs = _files(job, "input")
                session.merge(PandaJobRecord(
                    panda_id=int(job.PandaID), jedi_task_id=task_id, status=job.jobStatus,
                    site=job.computingSite, attempt_nr=int(job.attemptNr or 0),
                    input_files=inputs, stf_filename=inputs[0] if inputs else None,
                    error=job_error(job), updated_at=utcnow()))
                self._mirror(session, job, site, run_number, inputs)

    def _mirror(self, session, job, site: str, run_number: int, inputs: list[str]) -> None:
        """One reco attempt on PanDA as our job record, created at first sight and moved
        through the job lifecycle as PanDA moves the job (a move it does not allow, e.g.
        after an operator's kill recorded here, leaves the record as it is)."""
        panda_id, status = int(job.PandaID), our_job_status(job.jobStatus)
        record = session.scalar(select(JobRecord).where(JobRecord.panda_id == panda_id))
        if record is None:
            [output] = _files(job, "output")[:1] or [None]
            record = JobRecord(
                kind=JobKind.RECO, site=site, status=JOB.check(None, JobStatus.ACTIVATED),
                attempt_nr=int(job.attemptNr or 1), max_attempts=self.settings.max_attempts,
                run_number=run_number, stf_filename=inputs[0] if inputs else None,
                output=output, command=str(job.jobParameters or ""), panda_id=panda_id,
                activated_at=job_time(job.creationTime) or utcnow())
            session.add(record)
            session.flush()
        if status != record.status and JOB.allowed(record.status, status):
            record.status = status
            record.started_at = record.started_at or job_time(job.startTime)
            if status not in (JobStatus.ACTIVATED, JobStatus.RUNNING):
                record.ended_at = job_time(job.endTime) or utcnow()
                record.error, record.exit_code = job_error(job), job_exit_code(job)
                if status is JobStatus.FINISHED and record.output:
                    session.add_all(ProvenanceRecord(job_id=record.id, input_name=name,
                                                     output_name=record.output)
                                    for name in inputs)

    def _advance(self, run_number: int, site: str, by_stf: dict[str, list],
                 final_files: dict[str, str]) -> int:
        """Move each STF to what its latest job says; publish what merging needs."""
        with self.ctx.db.session() as session:
            rows = {r.filename: r for r in session.scalars(select(StfRecord).where(
                StfRecord.run_number == run_number, StfRecord.site == site,
                StfRecord.filename.in_(list(by_stf) + list(final_files))))}
        processed, failed, running, retrying = [], [], [], []
        for name, stf in rows.items():
            if stf.processing_status in (P.PROCESSED, P.MERGED, P.FAILED):
                continue
            jobs = sorted(by_stf.get(name, []), key=lambda j: (int(j.attemptNr or 0),
                                                                int(j.PandaID)))
            latest = jobs[-1] if jobs else None
            if latest is not None and latest.jobStatus == PandaJobStatus.FINISHED:
                processed.append((stf, latest))
            elif final_files.get(name) == JediFileStatus.FAILED:
                failed.append((stf, latest))
            elif latest is not None and latest.jobStatus in PANDA_JOB_RUNNING:
                running.append((stf, latest))
            elif latest is not None and latest.jobStatus in PANDA_JOB_FAILED:
                retrying.append((stf, latest))
        self._set_running(running)
        self._set_status(retrying, P.RETRYING)
        self._finish(processed, failed, site)
        return len(processed) + len(failed) + len(running) + len(retrying)

    def _set_running(self, running: list) -> None:
        with self.ctx.db.session() as session:
            for stf, job in running:
                started = job_time(job.startTime) or utcnow()
                session.execute(update(StfRecord).where(
                    StfRecord.id == stf.id,
                    PROCESSING.where(StfRecord.processing_status, P.RUNNING),
                ).values(processing_status=P.RUNNING))
                session.execute(update(StfRecord).where(
                    StfRecord.id == stf.id, StfRecord.dispatched_at.is_(None)).values(
                    dispatched_at=started))

    def _set_status(self, items: list, status: ProcessingStatus) -> None:
        if items:
            with self.ctx.db.session() as session:
                session.execute(update(StfRecord).where(
                    StfRecord.id.in_([stf.id for stf, _job in items]),
                    PROCESSING.where(StfRecord.processing_status, status),
                ).values(processing_status=status))

    def _finish(self, processed: list, failed: list, site: str) -> None:
        now = utcnow()
        with self.ctx.db.session() as session:
            for stf, job in processed:
                [output] = _files(job, "output") or [None]
                session.execute(update(StfRecord).where(
                    StfRecord.id == stf.id,
                    PROCESSING.where(StfRecord.processing_status, P.PROCESSED),
                ).values(processing_status=P.PROCESSED, processed_at=job_time(job.endTime) or now,
                    reco_output=output))
                session.execute(update(StfRecord).where(
                    StfRecord.id == stf.id, StfRecord.dispatched_at.is_(None)).values(
                    dispatched_at=job_time(job.startTime) or now))
        self._set_status(failed, P.FAILED)
        for stf, job in failed:
            attempts = int(job.attemptNr or 0) if job is not None else 0
            report_issue(self.ctx.db, "processing_failed",
                         f"PanDA gave up on {stf.filename} after {attempts} attempt(s)"
                         + (f", last PandaID {job.PandaID}: {job_error(job)}" if job else ""),
                         run_number=stf.run_number, filename=stf.filename)
        news = [(dest.EVENTS, self.ctx.message("job_state", m.JobState(
            job_id=int(job.PandaID), kind=JobKind.RECO, site=site, status=job.jobStatus,
            attempt=int(job.attemptNr or 0), filename=stf.filename, error=job_error(job),
        ), stf.run_number)) for stf, job in processed + failed if job is not None]
        news += [(dest.PROCESSED, self.ctx.message("stf_processed", m.StfNews(
            filename=stf.filename, run_number=stf.run_number, sequence=stf.sequence,
            detail={"job_id": int(job.PandaID), "site": site,
                    "output": (_files(job, "output") or [None])[0]},
        ), stf.run_number)) for stf, job in processed]
        if news:
            self.ctx.bus.publish_many(news)


def _files(job, kind: str) -> list[str]:
    return [f.lfn for f in job.Files if f.type == kind]

