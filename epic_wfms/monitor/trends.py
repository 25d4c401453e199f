"""Time-evolution data of the streaming dashboard (R11.8): latency per STF of a run and the
backlog over the throughput window, from the same indexed rows the dashboard reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.monitor.queries import LATENCY_WINDOW
from epic_wfms.store.schema import StfRecord


def latency_series(session: Session, run_number: int | None, limit: int = LATENCY_WINDOW
                   ) -> list[dict[str, Any]]:
    """End-to-end (announced -> processed) and processing seconds of the run's newest STFs,
    oldest first (index on run_number, sequence)."""
    rows = session.execute(select(StfRecord.sequence, StfRecord.available_at,
                                  StfRecord.dispatched_at, StfRecord.processed_at)
                           .where(StfRecord.run_number == run_number)
                           .order_by(StfRecord.sequence.desc()).limit(limit)).all()
    return [{"sequence": seq, "at": done.timestamp(),
             "end_to_end_s": round((done - avail).total_seconds(), 3),
             "process_s": round((done - start).total_seconds(), 3) if start else None}
            for seq, avail, start, done in reversed(rows) if done is not None]


def backlog_series(throughput: dict[str, Any], backlog_now: int) -> list[tuple[float, int]]:
    """STFs waiting or in flight at the end of each throughput bin, walked back from now:
    the backlog before a bin is the one after it, less what arrived, plus what was done."""
    since = datetime.fromisoformat(throughput["since"]).timestamp()
    width = throughput["bin_s"]
    received, processed = throughput["received"], throughput["processed"]
    points, level = [], backlog_now
    for index in range(len(received) - 1, -1, -1):
        points.append((since + (index + 1) * width, max(level, 0)))
        level = level - received[index] + processed[index]
    return list(reversed(points))
