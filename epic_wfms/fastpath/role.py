"""The fast path as one orchestrator component: the slicer feeding the standing pool."""

from __future__ import annotations

import os
import socket

from sqlalchemy import func, select

from epic_wfms.fastpath import slices
from epic_wfms.fastpath.pool import SlicePool, build_pool
from epic_wfms.fastpath.slicing import Slicer
from epic_wfms.fastpath.worker_pool import requeue
from epic_wfms.lifecycle.fastpath import SLICE_OPEN, WORKER, SliceStatus, WorkerStatus
from epic_wfms.lifecycle.run import RUN_LIVE
from epic_wfms.store.schema import FastPathWorkerRecord, RunRecord, TfSliceRecord, utcnow
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.ownership import pid_running


class FastPath:
    def __init__(self, ctx: StreamingContext, pool: SlicePool | None = None) -> None:
        """``pool``: the standing workers (``fastpath.pool.provider``); embedded by default."""
        self.ctx = ctx
        self.slicer = Slicer(ctx)
        self.pool: SlicePool = pool or build_pool(ctx)
        self.slicer.on_slices.append(self.pool.activity)

    def recover(self) -> None:
        """After a restart: workers of a dead incarnation on this host are recorded dead;
        slices left processing died with their workers (release them); queued slices may
        have lost their message with the process (send them again)."""
        self._bury_lost_workers()
        self._resume_run()
        with self.ctx.db.session() as session:
            stale = list(session.scalars(select(TfSliceRecord).where(
                TfSliceRecord.status.in_(SLICE_OPEN))))
        for record in stale:
            if record.status == SliceStatus.PROCESSING:
                status = slices.release(self.ctx.db, record.name, record.worker or "",
                                        record.attempts, "lost: the fast path stopped",
                                        self.ctx.config.fastpath.max_attempts)
                if status != SliceStatus.QUEUED:
                    continue
            requeue(self.ctx, slices.slice_work(record))

    def _resume_run(self) -> None:
        """Mid-run restart: provision the pool again for the run in progress (announced or
        open in the store, or with unfinished slices); a run that ended meanwhile drains."""
        with self.ctx.db.session() as session:
            active = session.scalar(select(func.max(RunRecord.number)).where(
                RunRecord.status.in_(RUN_LIVE)))
            unfinished = session.scalar(select(func.max(TfSliceRecord.run_number)).where(
                TfSliceRecord.status.in_(SLICE_OPEN)))
            run = max((r for r in (active, unfinished) if r is not None), default=None)
            status = session.scalar(select(RunRecord.status).where(RunRecord.number == run))
        if run is None:
            return
        self.pool.provision(run)
        if status not in RUN_LIVE:
            self.pool.end_of_run(run)

    def subscribe(self) -> None:
        self.slicer.subscribe()
        self.pool.subscribe()

    def stop(self) -> None:
        self.pool.stop()

    def _bury_lost_workers(self) -> None:
        """Worker names end in ``@host:agent-pid``: on this host, a gone pid is a dead agent."""
        host = socket.gethostname()
        with self.ctx.db.session() as session:
            for worker in session.scalars(select(FastPathWorkerRecord).where(
                    FastPathWorkerRecord.status == WorkerStatus.REGISTERED,
                    FastPathWorkerRecord.name.like(f"%@{host}:%"))):
                pid = int(worker.name.rsplit(":", 1)[1])
                if pid != os.getpid() and not pid_running(pid):
                    worker.status = WORKER.check(worker.status, WorkerStatus.DEAD, worker.name)
                    worker.ended_at = utcnow()
                    worker.detail = f"lost with its agent (pid {pid} is gone)"
