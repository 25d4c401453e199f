"""Read side of the fast path's bookkeeping, for the monitor pages and the API.

Plain dicts (JSON-ready), newest first where a list can grow; the writers are in
epic_wfms/fastpath (slices.py, results.py, histograms.py, worker_pool.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    FastPathAlarmRecord,
    FastPathHistogramRecord,
    FastPathScalingRecord,
    FastPathWorkerRecord,
    TfSliceRecord,
)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def slice_counts(db: Database, run_number: int) -> dict[str, int]:
    """Slices of the run by status: queued, processing, completed, failed."""
    with db.session() as session:
        return dict(session.execute(select(TfSliceRecord.status, func.count()).where(
            TfSliceRecord.run_number == run_number).group_by(TfSliceRecord.status)).all())


def recent_slices(db: Database, run_number: int, limit: int = 50) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(TfSliceRecord).where(
            TfSliceRecord.run_number == run_number,
        ).order_by(TfSliceRecord.id.desc()).limit(limit)).all()
    return [{
        "name": r.name, "stf": r.stf_filename, "kind": r.kind, "express": r.express,
        "status": r.status, "attempts": r.attempts, "worker": r.worker,
        "available_at": _iso(r.available_at), "completed_at": _iso(r.completed_at),
        "latency_s": (r.completed_at - r.available_at).total_seconds()
        if r.completed_at else None,
        "n_events": r.n_events, "error": r.error,
    } for r in rows]


def alarms(db: Database, run_number: int | None = None, limit: int = 100) -> list[dict]:
    query = select(FastPathAlarmRecord).order_by(FastPathAlarmRecord.id.desc()).limit(limit)
    if run_number is not None:
        query = query.where(FastPathAlarmRecord.run_number == run_number)
    with db.session() as session:
        rows = session.scalars(query).all()
    return [{"run_number": r.run_number, "slice": r.slice_name, "stf": r.stf_filename,
             "event": r.event, "kind": r.kind, "value": r.value, "threshold": r.threshold,
             "detail": r.detail, "raised_at": _iso(r.raised_at)} for r in rows]


def workers(db: Database, run_number: int) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(FastPathWorkerRecord).where(
            FastPathWorkerRecord.run_number == run_number,
        ).order_by(FastPathWorkerRecord.registered_at)).all()
    return [{"name": r.name, "pid": r.pid, "status": r.status, "slices_done": r.slices_done,
             "registered_at": _iso(r.registered_at), "ended_at": _iso(r.ended_at),
             "detail": r.detail} for r in rows]


def scaling_decisions(db: Database, run_number: int) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(FastPathScalingRecord).where(
            FastPathScalingRecord.run_number == run_number,
        ).order_by(FastPathScalingRecord.id)).all()
    return [{"decided_at": _iso(r.decided_at), "from_size": r.from_size, "to_size": r.to_size,
             "backlog": r.backlog, "slice_s": r.slice_s, "reason": r.reason} for r in rows]


def histogram_rows(db: Database, run_number: int) -> list[FastPathHistogramRecord]:
    with db.session() as session:
        return list(session.scalars(select(FastPathHistogramRecord).where(
            FastPathHistogramRecord.run_number == run_number)))
