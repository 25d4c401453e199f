"""Read model of the fast path for the monitor: slices, slice latency, the standing pool's size
over time, rolling histograms and alarms of one run (R3.8, R3.11, R3.12). Same conventions as
``monitor.queries``; the writers are in epic_wfms/fastpath.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epic_wfms.fastpath.histograms import HISTOGRAMS
from epic_wfms.monitor.queries import as_dict, iso, paged
from epic_wfms.store.schema import (
    FastPathAlarmRecord,
    FastPathHistogramRecord,
    FastPathScalingRecord,
    FastPathWorkerRecord,
    TfSliceRecord,
)
from epic_wfms.streaming.report import percentile

LATENCY_WINDOW = 300  # newest completed slices the latency plot and percentiles cover
SLICE_SORT = {"id", "completed_at", "available_at", "attempts"}
SLICE_FIELDS = ("name", "run_number", "stf_filename", "kind", "express", "status", "attempts",
                "worker", "available_at", "started_at", "completed_at", "processing_s",
                "n_events", "error")


def fastpath_runs(session: Session, limit: int = 20) -> list[int]:
    """Runs with fast-path results, newest first (from the small histogram table)."""
    return list(session.scalars(select(FastPathHistogramRecord.run_number)
                                .group_by(FastPathHistogramRecord.run_number)
                                .order_by(FastPathHistogramRecord.run_number.desc())
                                .limit(limit)))


def fastpath(session: Session, run_number: int) -> dict[str, Any]:
    """Everything the fast-path page shows for one run."""
    counts = dict(session.execute(select(TfSliceRecord.status, func.count())
                                  .where(TfSliceRecord.run_number == run_number)
                                  .group_by(TfSliceRecord.status)).all())
    done = session.execute(select(TfSliceRecord.completed_at, TfSliceRecord.available_at,
                                  TfSliceRecord.express, TfSliceRecord.processing_s)
                           .where(TfSliceRecord.run_number == run_number,
                                  TfSliceRecord.completed_at.is_not(None))
                           .order_by(TfSliceRecord.completed_at.desc())
                           .limit(LATENCY_WINDOW)).all()
    latency = [((c - a).total_seconds(), express, c.timestamp(), p) for c, a, express, p in done]
    all_s = [x for x, _, _, _ in latency]
    express_s = [x for x, e, _, _ in latency if e]
    scaling = session.scalars(select(FastPathScalingRecord)
                              .where(FastPathScalingRecord.run_number == run_number)
                              .order_by(FastPathScalingRecord.id)).all()
    workers = session.scalars(select(FastPathWorkerRecord)
                              .where(FastPathWorkerRecord.run_number == run_number)
                              .order_by(FastPathWorkerRecord.registered_at)).all()
    alarms = session.scalars(select(FastPathAlarmRecord)
                             .where(FastPathAlarmRecord.run_number == run_number)
                             .order_by(FastPathAlarmRecord.id.desc()).limit(50)).all()
    n_alarms = session.scalar(select(func.count()).select_from(FastPathAlarmRecord)
                              .where(FastPathAlarmRecord.run_number == run_number))
    return {"run_number": run_number, "slices": counts, "total": sum(counts.values()),
            "latency_s": _percentiles(all_s), "express_latency_s": _percentiles(express_s),
            "latency_series": [{"at": at, "latency_s": round(x, 4), "express": e,
                                "processing_s": p} for x, e, at, p in reversed(latency)],
            "pool_series": pool_series(scaling, workers),
            "scaling": [as_dict(s) for s in scaling[-50:]],
            "workers": [as_dict(w) for w in workers[-100:]],
            "histograms": histograms(session, run_number),
            "alarms": [as_dict(a) for a in alarms], "alarms_total": n_alarms}


def _percentiles(values: list[float]) -> dict[str, Any]:
    def rounded(p: float) -> float | None:
        value = percentile(values, p)
        return None if value is None else round(value, 4)
    return {"n": len(values), "p50": rounded(50), "p99": rounded(99)}


def pool_series(scaling: list[Any], workers: list[Any]) -> list[dict[str, Any]]:
    """The pool's size over time: workers registered minus workers ended (every change), with
    the autoscaler's targets alongside."""
    changes = [(w.registered_at, 1) for w in workers] + [
        (w.ended_at, -1) for w in workers if w.ended_at is not None]
    size, series = 0, []
    for at, delta in sorted(changes, key=lambda c: c[0]):
        size += delta
        series.append({"at": at.timestamp(), "workers": size, "target": None})
    series += [{"at": s.decided_at.timestamp(), "workers": None, "target": s.to_size}
               for s in scaling]
    return sorted(series, key=lambda p: p["at"])


def histograms(session: Session, run_number: int) -> list[dict[str, Any]]:
    titles = {spec.name: spec.title for spec in HISTOGRAMS}
    rows = session.scalars(select(FastPathHistogramRecord)
                           .where(FastPathHistogramRecord.run_number == run_number)
                           .order_by(FastPathHistogramRecord.name)).all()
    return [{"name": r.name, "title": titles.get(r.name, r.name), "low": r.low, "high": r.high,
             "counts": list(r.counts), "underflow": r.underflow, "overflow": r.overflow,
             "entries": r.entries, "updated_at": iso(r.updated_at)} for r in rows]


def slices(session: Session, run_number: int | None = None, status: str | None = None,
           stf: str | None = None, sort: str | None = None, limit: int = 100, offset: int = 0
           ) -> dict[str, Any]:
    """TF slices (the fast path's results per slice), newest first."""
    query = select(TfSliceRecord)
    for column, value in ((TfSliceRecord.run_number, run_number),
                          (TfSliceRecord.status, status), (TfSliceRecord.stf_filename, stf)):
        if value is not None:
            query = query.where(column == value)
    page = paged(session, query, TfSliceRecord, sort, SLICE_SORT, "-id", limit, offset)
    page["items"] = [{k: item[k] for k in SLICE_FIELDS} | {"summary": item["summary"]}
                     for item in page["items"]]
    return page
