"""Prompt processing of STFs at the E1 sites: stage in, run reco, retry, catch up deferred work."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import bindparam, func, select, update

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID, FileSpec
from epic_wfms.ddm.locality import stage_input, stage_inputs
from epic_wfms.lifecycle.job import JOB, JOB_ACTIVE
from epic_wfms.lifecycle.stf import PROCESSING, STF_ACTIVE
from epic_wfms.lifecycle.stf import ProcessingStatus as P
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.detector import DetectorState, Readiness
from epic_wfms.store.controls import processing_held
from epic_wfms.store.integrity import report_issue
from epic_wfms.store.outage import database_down, retry_while_down
from epic_wfms.store.schema import JobRecord, StfRecord, utcnow
from epic_wfms.store.stfs import stf_by_filename
from epic_wfms.streaming.activity import record_gate_event
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.ownership import Recovery
from epic_wfms.wfms import JobResult, JobSpec, JobStatus
from epic_wfms.wfms.interface import JobCallback, JobKind

log = logging.getLogger(__name__)


RECO_PAYLOAD = "epic_wfms.wfms.payloads.reco"
STAGE_IN = "Express"  # Rucio activity of the stage-in rules to the site's disk
MAX_BATCH = 16  # process requests claimed together when the site is behind


def dispatch_deferred(ctx: StreamingContext, run_number: int | None) -> int:
    """Catch-up: send every deferred STF of the run to its site's queue (R12.3)."""
    with ctx.db.session() as session:
        rows = session.scalars(select(StfRecord).where(
            StfRecord.run_number == run_number, StfRecord.processing_status == P.DEFERRED
        ).order_by(StfRecord.sequence)).all()
    for row in rows:
        ctx.publish(dest.process_queue(row.site), "process_stf", m.StfWork(
            filename=row.filename, run_number=row.run_number, sequence=row.sequence,
            site=row.site,
        ), row.run_number)
    return len(rows)


class StfProcessing:
    def __init__(self, ctx: StreamingContext, sites: list[str] | None = None) -> None:
        self.ctx = ctx
        self.sites = sites or [site.name for site in ctx.config.sites]
        self._retry = ctx.config.processing.retry
        self._locality = ctx.config.ddm.locality.get("reco", "replicate")  # docs/rucio.md
        self._adopted: set[str] = set()  # STFs recovered by this instance (ownership.py)
        self._pending: list[tuple[m.StfWork, JobResult]] = []
        self._pending_lock = threading.Lock()
        self._completing = threading.Lock()
        self._listen_to_executor()

    def _listen_to_executor(self) -> None:
        self.ctx.executor.add_start_listener(self.jobs_started)

    def stop(self) -> None:
        """Nothing of this role runs on its own: the executor's slots stop with it."""

    def recover(self, at_start: bool = True) -> None:
        """After a crash: jobs of our sites left activated/running were lost with their agent
        (PanDA's lost heartbeat); fail them and retry their STFs. With several process
        agents, only work of instances that are gone (streaming/ownership.py); the periodic
        ``adopt`` does the same for a peer that dies while this one runs."""
        me = getattr(self.ctx.executor, "owner", None)
        with self.ctx.db.session() as session:
            view = Recovery(session, "process", me, at_start)
            lost = [job for job in session.scalars(select(JobRecord).where(
                JobRecord.kind == JobKind.RECO, JobRecord.site.in_(self.sites),
                JobRecord.status.in_(JOB_ACTIVE),
            )) if view.orphaned(job.agent)]
            for record in lost:
                record.status = JOB.check(record.status, JobStatus.FAILED, f"job {record.id}")
                record.ended_at = utcnow()
                record.error = "lost: the processing agent stopped while the job was active"
            active = session.scalars(select(StfRecord).where(
                StfRecord.site.in_(self.sites), StfRecord.processing_status.in_(STF_ACTIVE),
            )).all()
            holders = dict(session.execute(select(JobRecord.stf_filename, JobRecord.agent).where(
                JobRecord.stf_filename.in_([s.filename for s in active]),
                JobRecord.kind == JobKind.RECO).order_by(JobRecord.id)).all())  # the latest
            orphans = [s for s in active if s.filename not in self._adopted and (
                view.orphaned(holders[s.filename]) if s.filename in holders
                else view.orphaned(s.claimed_by) if s.claimed_by else view.unowned())]
        self._adopted.update(s.filename for s in orphans)  # mine now, even before a job
        for stf in orphans:
            attempts = len(self._jobs_of(stf.filename))
            work = m.StfWork(filename=stf.filename, run_number=stf.run_number,
                             sequence=stf.sequence, site=stf.site)
            log.warning("recovering %s after %d attempt(s)", stf.filename, attempts)
            self._retry_or_fail(work, attempts, "lost with the processing agent")

    def adopt(self) -> None:
        """Periodic: the work of a process agent that died while this one runs."""
        self.recover(at_start=False)

    def _jobs_of(self, filename: str) -> list[JobRecord]:
        with self.ctx.db.session() as session:
            return list(session.scalars(select(JobRecord).where(
                JobRecord.stf_filename == filename, JobRecord.kind == JobKind.RECO)))

    def subscribe(self) -> None:
        for site in self.sites:
            self.ctx.bus.subscribe_batch(
                dest.process_queue(site), f"processing-{site}", self.on_process_stfs,
                max_batch=MAX_BATCH,
            )
        self.ctx.bus.subscribe(dest.STATE, "processing-gate", self.on_state_changed)

    # -- dispatch -------------------------------------------------------------------------
    def on_process_stfs(self, messages: list[m.Message]) -> None:
        """Claim the batch's STFs with one compare-and-set, stage them in with one rule call
        per site (by the workflow's locality mode), and submit each once its input is there.
        Already-dispatched STFs (redelivered requests) are skipped."""
        filenames = [msg.body.filename for msg in messages]
        if self._held(filenames):
            return  # an operator suspended processing: deferred until resumed (monitor)
        claimed = self._claim([msg.body for msg in messages])
        work = list({msg.body.filename: msg.body for msg in messages
                     if msg.body.filename in claimed}.values())
        submitted: set[str] = set()
        try:
            for site in {w.site for w in work}:
                at_site = {DID(naming.SCOPE, w.filename): w for w in work if w.site == site}
                batch = _StagedBatch(self._launch)
                stage_inputs(self.ctx.ddm, list(at_site), self.ctx.config.site(site).disk_rse,
                             self._locality, STAGE_IN,
                             lambda did, path, error, at=at_site, b=batch: b(at[did], path, error))
                self._launch_many(batch.close())  # inputs already there: one submission
                submitted.update(batch.seen)
        except Exception:
            unsent = [w.filename for w in work if w.filename not in submitted]
            # the claims must be free again even if the store is what failed: else the
            # redelivered requests find them taken and the STFs stay activated for ever
            retry_while_down(lambda: self._unclaim(unsent), f"unclaiming {len(unsent)} STF(s)")
            raise  # the bus retries the requests

    def _held(self, filenames: list[str]) -> bool:
        with self.ctx.db.session() as session:
            if not processing_held(session):
                return False
            session.execute(update(StfRecord).where(
                StfRecord.filename.in_(filenames),
                PROCESSING.where(StfRecord.processing_status, P.DEFERRED, [P.QUEUED]),
            ).values(processing_status=P.DEFERRED))
            return True

    def _unclaim(self, filenames: list[str]) -> None:
        with self.ctx.db.session() as session:
            session.execute(update(StfRecord).where(
                StfRecord.filename.in_(filenames),
                PROCESSING.where(StfRecord.processing_status, P.QUEUED, [P.ACTIVATED]),
            ).values(processing_status=P.QUEUED))

    def _claim(self, work: list[m.StfWork]) -> set[str]:
        """Compare-and-set queued|deferred -> activated: exactly one consumer dispatches, at
        the site the STF is routed to now (a request for the site it was rerouted from is
        stale: the decision box sent a new one)."""
        claimed: set[str] = set()
        with self.ctx.db.session() as session:
            for site in {w.site for w in work}:
                claimed.update(session.scalars(update(StfRecord).where(
                    StfRecord.filename.in_([w.filename for w in work if w.site == site]),
                    StfRecord.site == site,
                    PROCESSING.where(StfRecord.processing_status, P.ACTIVATED),
                ).values(processing_status=P.ACTIVATED,
                         claimed_by=getattr(self.ctx.executor, "owner", None),
                         ).returning(StfRecord.filename)))
        return claimed

    def _resubmit(self, work: m.StfWork, attempt: int, delay: float) -> None:
        """A retry must not vanish in its timer thread: if the store or the DDM is briefly
        unavailable (a restart, no free connection), try again later."""
        try:
            self._submit(work, attempt)
        except Exception:
            later = min(max(2 * delay, 1.0), 60.0)
            log.exception("resubmitting %s (attempt %d) failed; again in %.0f s",
                          work.filename, attempt, later)
            threading.Timer(later, self._resubmit, args=(work, attempt, later)).start()

    def _submit(self, work: m.StfWork, attempt: int) -> None:
        """Stage the STF by the workflow's locality mode; the job starts when it is there."""
        site = self.ctx.config.site(work.site)
        stage_input(self.ctx.ddm, DID(naming.SCOPE, work.filename), site.disk_rse,
                    self._locality, STAGE_IN,
                    lambda path, error: self._launch(work, attempt, path, error))

    def _launch(self, work: m.StfWork, attempt: int, stf_path: str | None,
                error: str | None) -> None:
        self._launch_many([(work, stf_path, error)], attempt)

    def _launch_many(self, staged: list[tuple[m.StfWork, str | None, str | None]],
                     attempt: int = 1) -> None:
        """Failed stage-ins go to the retry policy, the rest become jobs in one submission."""
        jobs = []
        for work, path, error in staged:
            if path is None:
                self._retry_or_fail(work, attempt, f"stage-in failed: {error}")
            else:
                jobs.append(self._job(work, attempt, path))
        if jobs:
            self.ctx.executor.submit_many(jobs)

    def _job(self, work: m.StfWork, attempt: int, stf_path: str) -> tuple[JobSpec, JobCallback]:
        site = self.ctx.config.site(work.site)
        output = naming.attempt_filename(naming.reco_output_filename(work.filename), attempt)
        out_path = self.ctx.ddm.pfn(DID(naming.SCOPE, output), site.disk_rse)
        args = ["--input", stf_path, "--output", out_path]
        if attempt <= self.ctx.config.fault_injection.reco_failures.get(work.sequence, 0):
            args.append("--inject-failure")
        spec = JobSpec(
            kind=JobKind.RECO, site=site.name, payload=RECO_PAYLOAD, args=args,
            inputs=[work.filename], output=output, run_number=work.run_number,
            stf_filename=work.filename, attempt_nr=attempt, max_attempts=self._retry.max_attempts,
        )
        return spec, lambda result: self._done(work, result)

    def jobs_started(self, jobs: list[tuple[int, JobSpec]], started: datetime) -> None:
        """Executor hook: the first start of an STF's job is its dispatch time."""
        names = [{"stf": spec.stf_filename} for _job_id, spec in jobs
                 if spec.kind == JobKind.RECO]
        if not names:
            return
        stfs = StfRecord.__table__
        with self.ctx.db.session() as session:
            session.execute(update(stfs).where(
                stfs.c.filename == bindparam("stf"),
                PROCESSING.where(stfs.c.processing_status, P.RUNNING),
            ).values(
                processing_status=P.RUNNING,
                dispatched_at=func.coalesce(stfs.c.dispatched_at, started),
            ), names)

    # -- completion -------------------------------------------------------------------------
    def _done(self, work: m.StfWork, result: JobResult) -> None:
        """Executor callback. Ends that arrive together are recorded together: whichever
        worker thread gets ``_completing`` drains what the others left (see ADR 0004)."""
        with self._pending_lock:
            self._pending.append((work, result))
        while self._completing.acquire(blocking=False):
            try:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                if batch:  # an outage is waited out: ends are never lost to a blip
                    retry_while_down(lambda batch=batch: self._complete(batch),
                                     f"recording the end of {len(batch)} job(s)")
            except Exception:  # logged, and the loop goes on: others' ends wait in _pending
                log.exception("recording the end of %d job(s) failed", len(batch))
            finally:
                self._completing.release()
            with self._pending_lock:
                if not self._pending:
                    return

    def _complete(self, batch: list[tuple[m.StfWork, JobResult]]) -> None:
        finished = [(w, r) for w, r in batch if r.status is JobStatus.FINISHED]
        try:
            self._record_processed(finished)
        except Exception as error:  # one bad output must not hold back the others: one by one
            if database_down(error):
                raise  # not the outputs' fault: the whole batch again once the store is back
            log.exception("recording %d processed STFs together failed; one by one",
                          len(finished))
            finished = [item for item in finished if self._record_one(*item)]
        for work, result in batch:
            if result.status is not JobStatus.FINISHED:
                self._retry_or_fail(work, result.spec.attempt_nr, result.error)
        news = [(dest.EVENTS, self.ctx.message("job_state", self._job_news(w, r), w.run_number))
                for w, r in batch]
        news += [(dest.PROCESSED, self.ctx.message("stf_processed", m.StfNews(
            filename=w.filename, run_number=w.run_number, sequence=w.sequence,
            detail={"job_id": r.job_id, "site": w.site, "output": r.spec.output},
        ), w.run_number)) for w, r in finished]
        self.ctx.bus.publish_many(news)

    def _record_one(self, work: m.StfWork, result: JobResult) -> bool:
        try:
            self._record_processed([(work, result)])
            return True
        except Exception as error:
            log.exception("recording %s as processed failed", work.filename)
            self._retry_or_fail(work, result.spec.attempt_nr,
                                f"its output could not be registered: {error}")
            return False

    def _record_processed(self, finished: list[tuple[m.StfWork, JobResult]]) -> None:
        """Register the outputs in one DDM call and mark their STFs processed in one update."""
        if not finished:
            return
        files = [self._output_file(work, result.spec) for work, result in finished]
        self.ctx.ddm.register_and_attach(files, {})
        if self.ctx.config.ddm.outputs_to:  # written locally, moved by rule asynchronously
            self.ctx.ddm.add_rules([f.did for f in files], self.ctx.config.ddm.outputs_to,
                                   activity="Output Export")
        now = utcnow()
        with self.ctx.db.session() as session:
            stfs = StfRecord.__table__  # Core executemany: one statement, many rows
            session.execute(update(stfs).where(
                stfs.c.filename == bindparam("stf"),
                PROCESSING.where(stfs.c.processing_status, P.PROCESSED),
            ).values(
                processing_status=P.PROCESSED, processed_at=now, reco_output=bindparam("output"),
            ), [{"stf": w.filename, "output": r.spec.output} for w, r in finished])

    def _retry_or_fail(self, work: m.StfWork, attempt: int, error: str | None) -> None:
        """STF-level retry policy: bounded attempts with exponential backoff."""
        if attempt < self._retry.max_attempts:
            delay = self._retry.backoff_s * 2 ** max(attempt - 1, 0)
            log.info("retrying %s (attempt %d failed: %s)", work.filename, attempt, error)
            self._move(work.filename, P.RETRYING)
            threading.Timer(delay, self._resubmit, args=(work, attempt + 1, delay)).start()
            return
        self._move(work.filename, P.FAILED)
        report_issue(
            self.ctx.db, "processing_failed", f"reco failed {attempt} times, last: {error}",
            run_number=work.run_number, filename=work.filename,
        )

    def _output_file(self, work: m.StfWork, spec: JobSpec) -> FileSpec:
        disk_rse = self.ctx.config.site(work.site).disk_rse
        did = DID(naming.SCOPE, spec.output)
        path = self.ctx.ddm.pfn(did, disk_rse)
        return FileSpec(did, disk_rse, path, Path(path).stat().st_size, file_adler32(Path(path)),
                        {"run_number": work.run_number, "parent": work.filename,
                         "kind": JobKind.RECO})

    @staticmethod
    def _job_news(work: m.StfWork, result: JobResult) -> m.JobState:
        return m.JobState(
            job_id=result.job_id, kind=result.spec.kind, site=result.spec.site,
            status=result.status.value, attempt=result.spec.attempt_nr,
            filename=work.filename, error=result.error,
        )

    # -- gating by state: suspend in standby, catch up on resume --------------------------------
    def on_state_changed(self, message: m.Message) -> None:
        change: m.StateChanged = message.body
        self.ctx.detector.state, self.ctx.detector.substate = change.to_state, change.to_substate
        if change.to_state == DetectorState.RUN and change.to_substate == Readiness.STANDBY:
            record_gate_event(
                self.ctx, "suspended", f"run {change.run_number} in standby ({change.trigger})",
                change.run_number,
            )
        elif (change.from_substate == Readiness.STANDBY
              and change.to_substate == Readiness.PHYSICS):
            backlog = dispatch_deferred(self.ctx, change.run_number)
            record_gate_event(
                self.ctx, "resumed", f"back to physics ({change.trigger}); catching up",
                change.run_number, backlog,
            )

    def _move(self, filename: str, status: P) -> None:
        with self.ctx.db.session() as session:
            record = stf_by_filename(session, filename)
            record.processing_status = PROCESSING.check(record.processing_status, status,
                                                        filename)


class _StagedBatch:
    """Collects the STFs whose input was staged at once, to launch them together; an STF
    staged later (an asynchronous rule finishing) is launched on its own."""

    def __init__(self, launch_one: Callable[[m.StfWork, int, str | None, str | None], None]):
        self._launch_one = launch_one
        self._ready: list[tuple[m.StfWork, str | None, str | None]] | None = []
        self.seen: list[str] = []  # STF file names

    def __call__(self, work: m.StfWork, path: str | None, error: str | None) -> None:
        if self._ready is None:
            self._launch_one(work, 1, path, error)
        else:
            self._ready.append((work, path, error))
            self.seen.append(work.filename)

    def close(self) -> list[tuple[m.StfWork, str | None, str | None]]:
        ready, self._ready = self._ready or [], None
        return ready
