"""Merge/gather (R3.7): merge every N processed STFs per site, the remainder at end of run,
then gather all partial merges into the run's merged output.

A run is finalized once it is closed (end_run), every valid STF has reached a terminal
processing state, deferred STFs were caught up and every STF is archived.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID, FileSpec
from epic_wfms.ddm.locality import stage_inputs
from epic_wfms.errors import DataManagementError
from epic_wfms.lifecycle.agent import AgentStatus
from epic_wfms.lifecycle.job import JOB, JOB_ACTIVE, JobStatus
from epic_wfms.lifecycle.merge import MERGE, MERGE_ENDED, MergeKind, MergeStatus
from epic_wfms.lifecycle.run import RUN, RUN_MERGING, RunStatus
from epic_wfms.lifecycle.stf import (
    PROCESSING,
    STF_IN_FLIGHT,
    ArchiveStatus,
    ProcessingStatus,
    Validation,
)
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.controls import sites_offline
from epic_wfms.store.deadletters import open_count
from epic_wfms.store.integrity import report_issue, report_or_update, resolve_run_issues
from epic_wfms.store.outage import database_down, retry_while_down
from epic_wfms.store.runs import get_run
from epic_wfms.store.schema import AgentRecord, JobRecord, MergeRecord, RunRecord, StfRecord, utcnow
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.late_data import reopen_datasets
from epic_wfms.streaming.ownership import Recovery
from epic_wfms.streaming.processing import dispatch_deferred
from epic_wfms.streaming.run_outcome import shortfall
from epic_wfms.streaming.runs import run_datasets
from epic_wfms.wfms import JobResult, JobSpec

log = logging.getLogger(__name__)

MERGE_PAYLOAD = "epic_wfms.wfms.payloads.merge"
MAX_BATCH = 64  # stf_processed news handled together when they arrive together
INGEST_ALIVE_S = 8.0  # an ingest agent whose heartbeat (every 2 s) is older is down
MISSING_AT_END = "missing_at_end_of_run"
RECOVERY_ATTEMPTS = 20  # attempts beyond max_attempts that recoveries after restarts may add


class _Taken(Exception):
    """What a merge would claim was claimed by another merge agent meanwhile."""


class Merging:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self._lock = threading.RLock()
        self._every = ctx.config.processing.merge_every
        self.ingest_in_process = False  # set by the orchestrator that also runs ingest
        self._adopted: set[int] = set()  # merges recovered by this instance (ownership.py)

    def subscribe(self) -> None:
        self.ctx.bus.subscribe_batch(dest.PROCESSED, "merging", self.on_stfs_processed,
                                     max_batch=MAX_BATCH, msg_types={"stf_processed"})

    def on_stfs_processed(self, messages: list[m.Message]) -> None:
        """One look for mergeable STFs per run and site of the batch, not one per STF."""
        news = {(msg.body.run_number, msg.body.detail.get("site")) for msg in messages
                if msg.body.run_number is not None and msg.body.detail.get("site")}
        with self._lock:
            for run_number, site in sorted(news):
                self._merge_pending(run_number, site, remainder=False)
        for run_number in sorted({run for run, _site in news}):
            self.try_finalize(run_number)

    def tick(self) -> None:
        """Periodic scan: merges nothing missed while this agent was down, finalizes runs."""
        for run_number in self.active_runs():
            with self._lock:
                for site in self.ctx.config.sites:
                    self._merge_pending(run_number, site.name, remainder=False)
            self.try_finalize(run_number)

    def recover(self, at_start: bool = True) -> None:
        """Merges left running by a stopped agent are submitted again, as the attempt after
        the last one any job of theirs made (its ``.a<n>`` output name). Merge and gather jobs
        still activated or running are lost with the agent that ran them, including one whose
        merge never learnt its id (an update that failed during a database outage): they are
        failed first. With several merge agents, only the work of instances that are gone
        (streaming/ownership.py); ``adopt`` does it periodically for a peer that dies."""
        me = getattr(self.ctx.executor, "owner", None)
        with self.ctx.db.session() as session:
            view = Recovery(session, "merge", me, at_start)
            lost = [job for job in session.scalars(select(JobRecord).where(
                JobRecord.kind.in_([k.job_kind for k in MergeKind]),
                JobRecord.status.in_(JOB_ACTIVE))) if view.orphaned(job.agent)]
            for record in lost:
                record.status = JOB.check(record.status, JobStatus.FAILED, f"job {record.id}")
                record.ended_at = utcnow()
                record.error = "lost: the merge agent stopped while the job was active"
            stale = []
            for merge in session.scalars(select(MergeRecord).where(
                    MergeRecord.status == MergeStatus.RUNNING)):
                last = self._last_job(session, merge)
                if merge.id in self._adopted:
                    continue  # resubmitted by this instance already (maybe still staging)
                holder = last.agent if last is not None else merge.agent
                if view.orphaned(holder) if holder or last else view.unowned():
                    stale.append((merge.id, MergeKind(merge.kind), merge.site, merge.output,
                                  self._attempt_of(merge, last)))
        self._adopted.update(merge_id for merge_id, *_rest in stale)
        if stale:
            with self.ctx.db.session() as session:  # mine now, even before a job is submitted
                session.execute(update(MergeRecord).where(MergeRecord.id.in_(
                    [merge_id for merge_id, *_rest in stale])).values(agent=me))
        for merge_id, kind, site, output, attempt in stale:
            inputs = self._inputs_of(merge_id)
            job_site = self._gather_site() if kind is MergeKind.GATHER else site
            self._submit(merge_id, job_site, inputs, output, kind, attempt + 1)

    def adopt(self) -> None:
        """Periodic: the merges of a merge agent that died while this one runs."""
        self.recover(at_start=False)

    def _attempt_names(self, merge: MergeRecord) -> dict[str, int]:
        limit = self.ctx.config.processing.retry.max_attempts + RECOVERY_ATTEMPTS
        return {naming.attempt_filename(merge.output, n): n for n in range(1, limit + 1)}

    def _last_job(self, session: Session, merge: MergeRecord) -> JobRecord | None:
        """The job of this merge's highest attempt (its outputs are ``.a<n>`` names of the
        merge's output; the merge's ``job_id`` may lag behind its latest job)."""
        jobs = session.scalars(select(JobRecord).where(
            JobRecord.run_number == merge.run_number,
            JobRecord.kind == MergeKind(merge.kind).job_kind,
            JobRecord.output.in_(list(self._attempt_names(merge))))).all()
        names = self._attempt_names(merge)
        return max(jobs, key=lambda job: names[job.output], default=None)

    def _attempt_of(self, merge: MergeRecord, job: JobRecord | None) -> int:
        return self._attempt_names(merge)[job.output] if job is not None else 0

    def _inputs_of(self, merge_id: int) -> list[str]:
        with self.ctx.db.session() as session:
            merge = session.get(MergeRecord, merge_id)
            if merge.kind == MergeKind.PARTIAL:
                return list(session.scalars(select(StfRecord.reco_output).where(
                    StfRecord.merge_id == merge_id).order_by(StfRecord.sequence)))
            return list(session.scalars(select(MergeRecord.output).where(
                MergeRecord.run_number == merge.run_number,
                MergeRecord.kind == MergeKind.PARTIAL,
                MergeRecord.status == MergeStatus.DONE).order_by(MergeRecord.id)))

    # -- partial merges ---------------------------------------------------------------------------
    def _merge_pending(self, run_number: int, site: str, remainder: bool) -> None:
        with self.ctx.db.session() as session:
            ready = session.execute(select(StfRecord.id, StfRecord.reco_output).where(
                StfRecord.run_number == run_number, StfRecord.site == site,
                StfRecord.processing_status == ProcessingStatus.PROCESSED,
                StfRecord.merge_id.is_(None),
            ).order_by(StfRecord.sequence)).all()
        while len(ready) >= self._every or (remainder and ready):
            chunk, ready = ready[: self._every], ready[self._every :]
            self._start_merge(run_number, site, chunk)

    def _start_merge(self, run_number: int, site: str, chunk: list[Row]) -> None:
        """The merge record and its inputs' claim in one transaction (one update for all):
        a compare-and-set on STFs not yet claimed, so that of two merge agents looking at the
        same STFs one merges them (the other's transaction is rolled back)."""
        try:
            merge_id, output = self._claim_merge(run_number, site, chunk)
        except _Taken:
            return
        retry_while_down(lambda: self._submit(merge_id, site, [r.reco_output for r in chunk],
                                              output, MergeKind.PARTIAL, 1),
                         f"submitting merge {merge_id}")

    def _claim_merge(self, run_number: int, site: str, chunk: list[Row]) -> tuple[int, str]:
        with self.ctx.db.session() as session:
            index = session.scalar(select(func.count()).select_from(MergeRecord).where(
                MergeRecord.run_number == run_number, MergeRecord.kind == MergeKind.PARTIAL,
                MergeRecord.site == site,
            ))
            merge = MergeRecord(
                run_number=run_number, kind=MergeKind.PARTIAL, site=site, merge_index=index,
                n_inputs=len(chunk), output=naming.merge_filename(run_number, site, index),
                status=MERGE.check(None, MergeStatus.RUNNING),
                agent=getattr(self.ctx.executor, "owner", None),
            )
            session.add(merge)
            session.flush()
            claimed = session.execute(update(StfRecord).where(
                StfRecord.id.in_([r.id for r in chunk]), StfRecord.merge_id.is_(None),
            ).values(merge_id=merge.id)).rowcount
            if claimed != len(chunk):
                raise _Taken  # another merge agent claimed some: roll everything back
            return merge.id, merge.output

    def _submit(self, merge_id: int, site: str, inputs: list[str], output: str, kind: MergeKind,
                attempt: int) -> None:
        """Stage the inputs at the site (rules), then submit the job once all are there. Never
        waits: with asynchronous rules (Rucio) the job is submitted from the rules' callbacks,
        so neither the tick thread nor a consumer blocks on transfers."""
        rse = self.ctx.config.site(site).disk_rse
        mode = self.ctx.config.ddm.locality.get("merge", "replicate")
        with self.ctx.db.session() as session:
            run_number = session.get(MergeRecord, merge_id).run_number
        spec = JobSpec(
            kind=kind.job_kind, site=site, payload=MERGE_PAYLOAD, args=[], inputs=inputs,
            output=naming.attempt_filename(output, attempt), run_number=run_number,
            attempt_nr=attempt, max_attempts=self.ctx.config.processing.retry.max_attempts,
        )
        dids = [DID(naming.SCOPE, name) for name in inputs]
        staged: dict[DID, str] = {}
        errors: list[str] = []
        pending = threading.Lock()

        def ready(did: DID, path: str | None, error: str | None) -> None:
            with pending:
                if path is not None:
                    staged[did] = path
                else:
                    errors.append(f"{did}: {error}")
                if len(staged) + len(errors) < len(dids):
                    return
            if errors:
                self._merge_done(merge_id, kind, JobResult(
                    0, spec, JobStatus.FAILED, None, utcnow(), None,
                    "staging failed: " + "; ".join(errors)))
            else:
                self._launch(merge_id, kind, spec, [staged[did] for did in dids], rse)

        try:
            stage_inputs(self.ctx.ddm, dids, rse, mode, "Merge Input", ready)
        except DataManagementError as error:
            self._merge_done(merge_id, kind, JobResult(0, spec, JobStatus.FAILED, None, utcnow(),
                                                       None, f"staging failed: {error}"))

    def _launch(self, merge_id: int, kind: MergeKind, spec: JobSpec, paths: list[str],
                rse: str) -> None:
        out_path = self.ctx.ddm.pfn(DID(naming.SCOPE, spec.output), rse)
        spec = replace(spec, args=["--output", out_path, *paths])
        job_id = self.ctx.executor.submit(spec, lambda r: self._merge_done(merge_id, kind, r))

        def link() -> None:
            with self.ctx.db.session() as session:
                session.get(MergeRecord, merge_id).job_id = job_id

        retry_while_down(link, f"linking merge {merge_id} to job {job_id}")

    def _merge_done(self, merge_id: int, kind: MergeKind, result: JobResult) -> None:
        spec = result.spec
        if result.status is not JobStatus.FINISHED:
            if spec.attempt_nr < spec.max_attempts:
                with self.ctx.db.session() as session:
                    base_output = session.get(MergeRecord, merge_id).output
                self._submit(merge_id, spec.site, spec.inputs, base_output, kind,
                             spec.attempt_nr + 1)
                return
            with self.ctx.db.session() as session:
                merge = session.get(MergeRecord, merge_id)
                merge.status = MERGE.check(merge.status, MergeStatus.FAILED, merge.output)
            report_issue(self.ctx.db, "merge_failed", f"{spec.output}: {result.error}",
                         run_number=spec.run_number, filename=spec.output)
            return
        if not result.extra.get("output_registered"):  # PanDA: the Adder registered it
            rse = self.ctx.config.site(spec.site).disk_rse
            did = DID(naming.SCOPE, spec.output)
            path = Path(self.ctx.ddm.pfn(did, rse))
            self.ctx.ddm.register_file(FileSpec(
                did, rse, str(path), path.stat().st_size, file_adler32(path),
                {"run_number": spec.run_number, "kind": spec.kind},
            ))
        final = kind is MergeKind.GATHER
        with self.ctx.db.session() as session:
            merge = session.get(MergeRecord, merge_id)
            merge.status = MERGE.check(merge.status, MergeStatus.DONE, merge.output)
            merge.output = spec.output
            session.execute(update(StfRecord).where(
                StfRecord.merge_id == merge_id,
                PROCESSING.where(StfRecord.processing_status, ProcessingStatus.MERGED),
            ).values(processing_status=ProcessingStatus.MERGED))
            if final:  # in the same transaction: a finished run always names its output
                session.get(RunRecord, spec.run_number).merged_output = spec.output
        self.ctx.publish(dest.EVENTS, "merge_done", m.MergeDone(
            run_number=spec.run_number, site=spec.site, output=spec.output,
            n_inputs=len(spec.inputs), final=final,
        ), spec.run_number)
        try:
            self.try_finalize(spec.run_number)
        except Exception as error:  # recorded above; the periodic tick finalizes the run
            if not database_down(error):
                raise

    # -- end of run ---------------------------------------------------------------------------
    def try_finalize(self, run_number: int) -> None:
        with self._lock:
            run = get_run(self.ctx.db, run_number)
            if run is None or run.status != RunStatus.CLOSED or self._held(run) or (
                    not self._all_received(run)):
                return
            statuses = self._processing_statuses(run_number)
            if statuses & STF_IN_FLIGHT:
                return
            if ProcessingStatus.DEFERRED in statuses:
                dispatch_deferred(self.ctx, run_number)  # end-of-run catch-up of standby STFs
                return
            for site in self.ctx.config.sites:
                self._merge_pending(run_number, site.name, remainder=True)
            merges = self._merges(run_number)
            if any(mr.status == MergeStatus.RUNNING for mr in merges):
                return
            gathers = [mr for mr in merges if mr.kind == MergeKind.GATHER]
            gather = next((mr for mr in reversed(gathers)
                           if mr.status != MergeStatus.SUPERSEDED), None)
            partials = [mr for mr in merges
                        if mr.kind == MergeKind.PARTIAL and mr.status == MergeStatus.DONE]
            if gather is not None and gather.n_inputs != len(partials):
                self._supersede(gather)  # late STFs were merged since: gather them all again
                gather = None
            if gather is None:
                self._start_gather(run_number, partials, index=len(gathers))
            elif gather.status in MERGE_ENDED and self._archiving_done(run_number):
                for dataset in run_datasets(self.ctx, run_number):
                    self.ctx.ddm.close_dataset(dataset)
                self._end_run(run_number, gather)

    def _end_run(self, run_number: int, gather: MergeRecord) -> None:
        """``finished`` (or ``incomplete``), unless an STF arrived since the checks: decided
        under the run's row lock, which a late STF's reopening takes too (late_data.py)."""
        short = shortfall(self.ctx.db, run_number)
        with self.ctx.db.session() as session:
            run = session.get(RunRecord, run_number, with_for_update=True)
            if run.status != RunStatus.CLOSED:
                return
            late = session.scalar(select(func.count()).select_from(StfRecord).where(
                StfRecord.run_number == run_number, StfRecord.validation == Validation.OK,
                (StfRecord.merge_id.is_(None) & StfRecord.processing_status.in_(
                    [*STF_IN_FLIGHT, ProcessingStatus.DEFERRED, ProcessingStatus.PROCESSED]))
                | (StfRecord.archive_status == ArchiveStatus.PENDING)))
            partials = session.scalar(select(func.count()).select_from(MergeRecord).where(
                MergeRecord.run_number == run_number, MergeRecord.kind == MergeKind.PARTIAL,
                MergeRecord.status == MergeStatus.DONE))
            if not late and partials == gather.n_inputs:
                ended = RunStatus.INCOMPLETE if short else RunStatus.FINISHED
                run.status = RUN.check(run.status, ended, f"run {run_number}")
                run.finished_at = utcnow()
        if late or partials != gather.n_inputs:
            log.warning("run %d: STFs arrived while it was being finalized; merging them "
                        "and gathering again", run_number)
            reopen_datasets(self.ctx, run_number)
            return
        if short:
            log.warning("run %d is incomplete: %s", run_number, "; ".join(short))

    def _supersede(self, gather: MergeRecord) -> None:
        with self.ctx.db.session() as session:
            session.get(RunRecord, gather.run_number, with_for_update=True)
            record = session.get(MergeRecord, gather.id)
            if record.status not in MERGE_ENDED:
                return  # superseded by another merge agent meanwhile
            record.status = MERGE.check(record.status, MergeStatus.SUPERSEDED, record.output)
        log.warning("run %d: merges were added after its gather %s; gathering again",
                    gather.run_number, gather.output)

    def _held(self, run: RunRecord) -> bool:
        """Dead letters of the run may still be replayed into it: wait (up to
        ``processing.dead_letter_hold_s`` after its end) while any is unresolved."""
        if not open_count(self.ctx.db, run.number):
            return False
        hold = timedelta(seconds=self.ctx.config.processing.dead_letter_hold_s)
        return utcnow() - (run.end_time or utcnow()) < hold

    def _all_received(self, run: RunRecord) -> bool:
        """All STFs the DAQ declared are here, or the grace for late STFs passed: it runs
        only while ingest is alive, from the latest of end_run, the last STF received and the
        start of the ingest now running (a restarted ingest's backlog, still delivering,
        keeps the run open; an ingest that is down holds it). STFs still missing then are
        reported in one issue per run, resolved by itself if they arrive later."""
        with self.ctx.db.session() as session:
            seqs = set(session.scalars(
                select(StfRecord.sequence).where(StfRecord.run_number == run.number)
            ))
            last_received = session.scalar(
                select(func.max(StfRecord.received_at)).where(StfRecord.run_number == run.number)
            )
        first = run.first_sequence or 0  # the testbed counts from 1
        missing = sorted(set(range(first, first + (run.total_stfs or 0))) - seqs)
        if not missing and run.total_stfs is not None:
            resolve_run_issues(self.ctx.db, MISSING_AT_END, run.number)  # if they came late
            return True  # unknown total (closed by the state topic before end_run): wait grace
        ingest_up = self._ingest_up_since()
        if ingest_up is False:
            return False
        moments = [t for t in (run.end_time, last_received, ingest_up) if t is not None]
        quiet_since = max(moments) if moments else utcnow()
        grace = timedelta(seconds=self.ctx.config.processing.missing_grace_s)
        if utcnow() - quiet_since < grace:
            return False
        if missing:
            report_or_update(
                self.ctx.db, MISSING_AT_END,
                f"run {run.number}: DAQ declared {run.total_stfs} STFs, "
                f"{len(missing)} never arrived: sequences {missing[:20]}",
                run_number=run.number,
            )
        return True

    def _ingest_up_since(self) -> datetime | bool | None:
        """When the ingest now running started (the latest, if several), None if ingest
        runs in this process or not as agents at all, False if no ingest agent is alive
        (heartbeat within INGEST_ALIVE_S) although ingest runs as agents."""
        if self.ingest_in_process:
            return None
        now = utcnow()
        with self.ctx.db.session() as session:
            agents = session.execute(select(
                AgentRecord.status, AgentRecord.started_at, AgentRecord.heartbeat_at,
            ).where(AgentRecord.role == "ingest")).all()
        if not agents:
            return None
        alive = [a.started_at for a in agents if a.status == AgentStatus.RUNNING
                 and (now - a.heartbeat_at).total_seconds() < INGEST_ALIVE_S]
        return max(alive) if alive else False

    def _start_gather(self, run_number: int, merges: list[MergeRecord], index: int = 0) -> None:
        """The run's ``index``-th gather (0: the first; more after late STFs), created under
        the run's row lock, so that of two merge agents finalizing the run one gathers."""
        output = naming.run_merged_filename(run_number, index)
        with self.ctx.db.session() as session:
            session.get(RunRecord, run_number, with_for_update=True)
            if session.scalar(select(func.count()).select_from(MergeRecord).where(
                    MergeRecord.run_number == run_number, MergeRecord.kind == MergeKind.GATHER,
                    MergeRecord.status != MergeStatus.SUPERSEDED)):
                return  # another merge agent started it
            gather = MergeRecord(
                run_number=run_number, kind=MergeKind.GATHER, site=None, merge_index=index,
                output=output, n_inputs=len(merges), agent=getattr(self.ctx.executor, "owner",
                                                                   None),
                status=MERGE.check(None, MergeStatus.RUNNING if merges else MergeStatus.DONE),
            )
            session.add(gather)
            session.flush()
            gather_id = gather.id
        if not merges:  # nothing was processed (e.g. archive-only run): nothing to gather
            self.try_finalize(run_number)
            return
        retry_while_down(lambda: self._submit(gather_id, self._gather_site(),
                                              [mr.output for mr in merges], output,
                                              MergeKind.GATHER, 1),
                         f"submitting the gather of run {run_number}")

    def _gather_site(self) -> str:
        """The first configured E1 an operator has not taken offline (else the first)."""
        with self.ctx.db.session() as session:
            offline = sites_offline(session)
        names = [site.name for site in self.ctx.config.sites]
        return next((name for name in names if name not in offline), names[0])

    def _processing_statuses(self, run_number: int) -> set[str]:
        with self.ctx.db.session() as session:
            return set(session.scalars(select(StfRecord.processing_status).where(
                StfRecord.run_number == run_number, StfRecord.validation == Validation.OK
            ).distinct()))

    def _merges(self, run_number: int) -> list[MergeRecord]:
        with self.ctx.db.session() as session:
            return list(session.scalars(
                select(MergeRecord).where(MergeRecord.run_number == run_number)
            ))

    def _archiving_done(self, run_number: int) -> bool:
        with self.ctx.db.session() as session:
            pending = session.scalar(select(func.count()).select_from(StfRecord).where(
                StfRecord.run_number == run_number, StfRecord.validation == Validation.OK,
                StfRecord.archive_status == ArchiveStatus.PENDING,
            ))
        return pending == 0

    def active_runs(self) -> list[int]:
        """Runs with work left to merge or finalize."""
        with self.ctx.db.session() as session:
            return list(session.scalars(
                select(RunRecord.number).where(RunRecord.status.in_(RUN_MERGING))
            ))
