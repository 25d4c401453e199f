"""Slice results: completion bookkeeping, event-level results, alarms, and the run summary.

``record_result`` completes a slice in one transaction (compare-and-set from this worker's
attempt, alarm rows, histogram fill), then publishes the alarms and the ``slice_result``. A
result that arrives after its attempt was released (the worker was declared dead) changes
nothing: no slice is counted twice.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.fastpath import histograms
from epic_wfms.fastpath.express import publish_alarms
from epic_wfms.lifecycle.fastpath import (
    SLICE,
    SLICE_OPEN,
    SliceOutcome,
    SliceStatus,
    WorkerStatus,
)
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    FastPathAlarmRecord,
    FastPathWorkerRecord,
    TfSliceRecord,
    utcnow,
)
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.report import percentile


def record_result(ctx: StreamingContext, work: m.SliceWork, worker: str, attempt: int,
                  reply: dict[str, Any]) -> bool:
    """Complete the slice from a successful payload reply; False if it was not ours anymore."""
    for tries in range(1, 4):
        try:
            if not _complete(ctx, work, worker, attempt, reply):
                return False
            break
        except IntegrityError:  # two workers created the run's first histogram rows at once
            if tries == 3:
                raise
    publish_alarms(ctx, work, reply.get("anomalies", []))
    ctx.publish(dest.FASTPATH_RESULTS, "slice_result", m.SliceResult(
        slice_name=work.slice_name, run_number=work.run_number, worker=worker,
        status=SliceOutcome.COMPLETED, attempt=attempt, n_events=reply.get("n_events", 0),
        events=reply.get("events", []), summary=reply.get("summary", {}),
        processing_s=reply.get("processing_s"),
        latency_s=round((utcnow() - work.available_at).total_seconds(), 4),
    ), work.run_number)
    return True


def _complete(ctx: StreamingContext, work: m.SliceWork, worker: str, attempt: int,
              reply: dict[str, Any]) -> bool:
    """One transaction: slice completed (compare-and-set), alarm rows, histograms."""
    now = utcnow()
    with ctx.db.session() as session:
        done = session.execute(update(TfSliceRecord).where(
            TfSliceRecord.name == work.slice_name,
            SLICE.where(TfSliceRecord.status, SliceStatus.COMPLETED),
            TfSliceRecord.worker == worker, TfSliceRecord.attempts == attempt,
        ).values(status=SliceStatus.COMPLETED, completed_at=now,
                 processing_s=reply.get("processing_s"), n_events=reply.get("n_events"),
                 summary=reply.get("summary", {})))
        if done.rowcount != 1:
            return False
        session.add_all(FastPathAlarmRecord(
            run_number=work.run_number, slice_name=work.slice_name,
            stf_filename=work.stf_filename, event=a.get("event"), kind=a["kind"],
            value=a["value"], threshold=a["threshold"], detail=a.get("detail", ""),
            raised_at=now) for a in reply.get("anomalies", []))
        session.execute(update(FastPathWorkerRecord).where(FastPathWorkerRecord.name == worker)
                        .values(slices_done=FastPathWorkerRecord.slices_done + 1))
        if work.run_number is not None:
            histograms.fill(session, work.run_number, reply.get("events", []))
    return True


def publish_failure(ctx: StreamingContext, work: m.SliceWork, worker: str, attempt: int,
                    status: SliceStatus, error: str) -> None:
    """How a failed attempt ended: the slice failed, or it is queued again (retrying)."""
    outcome = SliceOutcome.FAILED if status == SliceStatus.FAILED else SliceOutcome.RETRYING
    ctx.publish(dest.FASTPATH_RESULTS, "slice_result", m.SliceResult(
        slice_name=work.slice_name, run_number=work.run_number, worker=worker,
        status=outcome, attempt=attempt, error=error,
    ), work.run_number)


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def fastpath_report(db: Database, run_number: int) -> dict[str, Any]:
    """The fast path's part of the run summary (``epic-wfms demo --json``)."""
    with db.session() as session:
        rows = session.execute(select(
            TfSliceRecord.status, TfSliceRecord.attempts, TfSliceRecord.express,
            TfSliceRecord.available_at, TfSliceRecord.completed_at,
        ).where(TfSliceRecord.run_number == run_number)).all()
        alarms = session.scalar(select(func.count()).select_from(FastPathAlarmRecord).where(
            FastPathAlarmRecord.run_number == run_number))
        workers = dict(session.execute(select(FastPathWorkerRecord.status, func.count()).where(
            FastPathWorkerRecord.run_number == run_number,
        ).group_by(FastPathWorkerRecord.status)).all())
    latency = [(done - avail).total_seconds() for status, _a, _e, avail, done in rows
               if status == SliceStatus.COMPLETED]
    express = [(done - avail).total_seconds() for status, _a, exp, avail, done in rows
               if status == SliceStatus.COMPLETED and exp]
    return {
        "slices": {
            "total": len(rows),
            "done": sum(1 for r in rows if r.status == SliceStatus.COMPLETED),
            "failed": sum(1 for r in rows if r.status == SliceStatus.FAILED),
            "retried": sum(1 for r in rows if r.attempts > 1),
            "open": sum(1 for r in rows if r.status in SLICE_OPEN),
        },
        "slice_latency_s": {"p50": _rounded(percentile(latency, 50)),
                            "p99": _rounded(percentile(latency, 99)), "n": len(latency)},
        "express_latency_s": {"p50": _rounded(percentile(express, 50)),
                              "p99": _rounded(percentile(express, 99)), "n": len(express)},
        "alarms": alarms,
        "fastpath_workers": workers,
    }


def wait_fastpath_drained(db: Database, run_number: int, timeout: float) -> bool:
    """Poll the store until the run's slices are all final and its workers gone (any process
    may run the pool, so the store is what tells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            open_slices = session.scalar(select(func.count()).select_from(TfSliceRecord).where(
                TfSliceRecord.run_number == run_number,
                TfSliceRecord.status.in_(SLICE_OPEN)))
            live = session.scalar(select(func.count()).select_from(FastPathWorkerRecord).where(
                FastPathWorkerRecord.run_number == run_number,
                FastPathWorkerRecord.status == WorkerStatus.REGISTERED))
        if not open_slices and not live:
            return True
        time.sleep(0.2)
    return False
