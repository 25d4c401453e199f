"""The fast path as one orchestrator component: the slicer feeding the standing pool."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.fastpath import slices
from epic_wfms.fastpath.slicing import Slicer
from epic_wfms.fastpath.worker_pool import FastPathPool, requeue
from epic_wfms.store.schema import TfSliceRecord
from epic_wfms.streaming.context import StreamingContext


class FastPath:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self.slicer = Slicer(ctx)
        self.pool = FastPathPool(ctx)
        self.slicer.on_slices.append(self.pool.activity)

    def recover(self) -> None:
        """After a restart: slices left processing died with their workers (release them);
        queued slices may have lost their message with the process (send them again)."""
        with self.ctx.db.session() as session:
            stale = list(session.scalars(select(TfSliceRecord).where(
                TfSliceRecord.status.in_((slices.PROCESSING, slices.QUEUED)))))
        for record in stale:
            if record.status == slices.PROCESSING:
                status = slices.release(self.ctx.db, record.name, record.worker or "",
                                        record.attempts, "lost: the fast path stopped",
                                        self.ctx.config.fastpath.max_attempts)
                if status != slices.QUEUED:
                    continue
            requeue(self.ctx, slices.slice_work(record))

    def subscribe(self) -> None:
        self.slicer.subscribe()
        self.pool.subscribe()

    def stop(self) -> None:
        self.pool.stop()
