"""TF slices in the store: queued -> processing -> completed | failed, with bounded retry
(the slice lifecycle: epic_wfms/lifecycle/fastpath.py).

Every transition is a compare-and-set on the slice row, so a slice is processed by one worker
at a time and completed at most once, whatever the bus redelivers or duplicates: a claim
succeeds only from ``queued``; a completion only from ``processing`` by the claiming worker
in the same attempt (results.py); a release (worker died, payload failed) puts the slice
back to ``queued`` or, after ``max_attempts``, to ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from epic_wfms.bus.messages import SliceWork
from epic_wfms.lifecycle.fastpath import SLICE, SLICE_OPEN, SliceStatus
from epic_wfms.store.database import Database
from epic_wfms.store.schema import TfSliceRecord, utcnow

S = SliceStatus


def add_slices(db: Database, works: Iterable[SliceWork]) -> list[SliceWork]:
    """Insert new slices as queued; return those still queued (new, or re-announced)."""
    works = list(works)
    with db.session() as session:
        known = dict(session.execute(select(TfSliceRecord.name, TfSliceRecord.status).where(
            TfSliceRecord.name.in_([w.slice_name for w in works]))).all())
        for work in works:
            if work.slice_name not in known:
                session.add(TfSliceRecord(
                    name=work.slice_name, run_number=work.run_number,
                    stf_filename=work.stf_filename, sample_filename=work.sample_filename,
                    path=work.path, first_tf=work.first_tf, tf_count=work.tf_count,
                    kind=work.kind, express=work.express, status=SLICE.check(None, S.QUEUED),
                    attempts=0,
                    available_at=work.available_at,
                ))
    return [w for w in works if known.get(w.slice_name, S.QUEUED) == S.QUEUED]


def claim(db: Database, name: str, worker: str) -> int | None:
    """queued -> processing for ``worker``; the attempt number, or None if not queued."""
    with db.session() as session:
        return session.scalar(update(TfSliceRecord).where(
            TfSliceRecord.name == name, SLICE.where(TfSliceRecord.status, S.PROCESSING),
        ).values(status=S.PROCESSING, worker=worker, attempts=TfSliceRecord.attempts + 1,
                 started_at=utcnow(), error=None).returning(TfSliceRecord.attempts))


def release(db: Database, name: str, worker: str, attempt: int, error: str,
            max_attempts: int) -> SliceStatus | None:
    """A failed attempt: back to queued (retry) or failed (attempts used up); None if the
    slice is no longer this worker's attempt (someone already released it)."""
    status = S.FAILED if attempt >= max_attempts else S.QUEUED
    with db.session() as session:
        done = session.execute(update(TfSliceRecord).where(
            TfSliceRecord.name == name, SLICE.where(TfSliceRecord.status, status),
            TfSliceRecord.worker == worker, TfSliceRecord.attempts == attempt,
        ).values(status=status, error=error[-2000:],
                 completed_at=utcnow() if status == S.FAILED else None))
        return status if done.rowcount == 1 else None


def held_by(db: Database, workers: Iterable[str]) -> list[TfSliceRecord]:
    """Slices in processing by any of ``workers`` (to release when they died)."""
    with db.session() as session:
        return list(session.scalars(select(TfSliceRecord).where(
            TfSliceRecord.status == S.PROCESSING, TfSliceRecord.worker.in_(list(workers)))))


def slice_work(record: TfSliceRecord) -> SliceWork:
    return SliceWork(
        slice_name=record.name, run_number=record.run_number, stf_filename=record.stf_filename,
        sample_filename=record.sample_filename, path=record.path, first_tf=record.first_tf,
        tf_count=record.tf_count, kind=record.kind, express=record.express,
        available_at=record.available_at,
    )


def queued(db: Database, run_number: int | None) -> list[TfSliceRecord]:
    with db.session() as session:
        return list(session.scalars(select(TfSliceRecord).where(
            TfSliceRecord.run_number == run_number, TfSliceRecord.status == S.QUEUED)))


def open_count(db: Database, run_number: int | None) -> tuple[int, int, float]:
    """(queued, processing, seconds the oldest queued slice has waited) for the run."""
    with db.session() as session:
        rows = {status: (n, oldest) for status, n, oldest in session.execute(select(
            TfSliceRecord.status, func.count(), func.min(TfSliceRecord.queued_at),
        ).where(
            TfSliceRecord.run_number == run_number,
            TfSliceRecord.status.in_(SLICE_OPEN),
        ).group_by(TfSliceRecord.status)).all()}
    queued, oldest = rows.get(S.QUEUED, (0, None))
    if isinstance(oldest, str):  # SQLite returns MIN() of a timestamp as text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    wait = (utcnow() - oldest).total_seconds() if oldest else 0.0
    return queued, rows.get(S.PROCESSING, (0, None))[0], wait


def recent_slice_s(db: Database, run_number: int | None, last: int = 10) -> float | None:
    """Mean wall time per slice on a worker (claim to result) over the last completions."""
    with db.session() as session:
        rows = session.execute(select(TfSliceRecord.started_at, TfSliceRecord.completed_at).where(
            TfSliceRecord.run_number == run_number, TfSliceRecord.status == S.COMPLETED,
        ).order_by(TfSliceRecord.completed_at.desc()).limit(last)).all()
    spans = [(done - start).total_seconds() for start, done in rows if start and done]
    return sum(spans) / len(spans) if spans else None
