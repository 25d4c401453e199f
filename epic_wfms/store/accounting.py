"""Brokerage decisions and resource usage in the store, and the queries the monitor asks.

``why(job_ref)`` answers "why did my job go there?"; ``usage_summary(by=...)`` gives core-
and GPU-hours by any of workflow, user, site, activity (R8.6, R10.9).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from epic_wfms.brokerage.decision import Decision
from epic_wfms.brokerage.request import JobRequest
from epic_wfms.errors import EpicWfmsError
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    BrokerageDecisionRecord,
    ResourceUsageHourRecord,
    ResourceUsageRecord,
)

GROUPINGS = ("workflow", "user", "site", "activity", "queue")


@dataclass(frozen=True, slots=True)
class Usage:
    """One finished (or failed) job's resource use."""

    job_ref: str
    site: str
    queue: str
    activity: str
    status: str
    cores: int
    started_at: datetime
    ended_at: datetime
    workflow: str = ""
    user: str = ""
    gpus: int = 0


def record_decisions(db: Database, pairs: Iterable[tuple[Decision, JobRequest]],
                     at: datetime) -> int:
    """Store decisions in one transaction (brokerage runs in bulk; so does its bookkeeping)."""
    rows = [{
        "job_ref": d.job_id, "workflow": r.workflow, "username": r.user,
        "activity": r.workflow_class, "lane": r.lane, "outcome": d.outcome, "site": d.site,
        "queue": d.queue, "score": float(d.score), "reasons": d.reasons, "decided_at": at,
    } for d, r in pairs]
    if rows:
        with db.session() as session:
            session.execute(BrokerageDecisionRecord.__table__.insert(), rows)
    return len(rows)


def record_usage(db: Database, usages: Iterable[Usage]) -> int:
    usages = list(usages)
    if usages:
        with db.session() as session:
            insert_usage(session, usages)
    return len(usages)


HOURLY_KEY = ("site", "queue", "activity", "workflow", "username", "status")


def insert_usage(session: Session, usages: Sequence[Usage]) -> None:
    """Record jobs' usage and add it to the hourly sums, in the caller's transaction (the
    worker pool ending jobs, the template runner ending a step run, a simulation)."""
    rows = usage_rows(usages)
    if not rows:
        return
    session.execute(ResourceUsageRecord.__table__.insert(), rows)
    sums: dict[tuple, list[float]] = {}
    for row in rows:
        hour = row["ended_at"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        entry = sums.setdefault((hour, *(row[k] for k in HOURLY_KEY)), [0.0, 0.0, 0])
        entry[0] += row["core_seconds"]
        entry[1] += row["gpu_seconds"]
        entry[2] += 1
    table = ResourceUsageHourRecord.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["hour", *HOURLY_KEY],
        set_={name: table.c[name] + statement.excluded[name]
              for name in ("core_seconds", "gpu_seconds", "jobs")})
    session.execute(statement, [  # sorted: concurrent writers lock rows in one order
        {"hour": key[0], **dict(zip(HOURLY_KEY, key[1:], strict=True)), "core_seconds": c,
         "gpu_seconds": g, "jobs": n} for key, (c, g, n) in sorted(sums.items())])


def usage_rows(usages: Iterable[Usage]) -> list[dict[str, Any]]:
    """Rows of ``resource_usage`` (core and GPU seconds computed) for a bulk insert; callers
    that already hold a transaction (the worker pool ending jobs) insert them there."""
    rows = []
    for u in usages:
        seconds = (u.ended_at - u.started_at).total_seconds()
        if seconds < 0:
            raise EpicWfmsError(f"usage of {u.job_ref} ends before it starts",
                                f"started {u.started_at}, ended {u.ended_at}",
                                "report the job's real start and end times")
        rows.append({
            "job_ref": u.job_ref, "workflow": u.workflow, "username": u.user, "site": u.site,
            "queue": u.queue, "activity": u.activity, "status": u.status, "cores": u.cores,
            "gpus": u.gpus, "started_at": u.started_at, "ended_at": u.ended_at,
            "core_seconds": u.cores * seconds, "gpu_seconds": u.gpus * seconds,
        })
    return rows


def why(db: Database, job_ref: str) -> list[dict[str, Any]]:
    """Every brokerage decision about a job, oldest first, with its reasons."""
    with db.session() as session:
        rows = session.scalars(select(BrokerageDecisionRecord)
                               .where(BrokerageDecisionRecord.job_ref == job_ref)
                               .order_by(BrokerageDecisionRecord.id)).all()
        return [{"outcome": r.outcome, "site": r.site, "queue": r.queue, "score": r.score,
                 "lane": r.lane, "decided_at": r.decided_at.isoformat(), "reasons": r.reasons}
                for r in rows]


def usage_summary(db: Database, by: Sequence[str] = ("site", "activity"),
                  since: datetime | None = None, until: datetime | None = None
                  ) -> list[dict[str, Any]]:
    """Core-hours, GPU-hours and job counts grouped by ``by`` (any of GROUPINGS)."""
    with db.session() as session:
        return usage_grouped(session, by, since, until)


def usage_grouped(session: Session, by: Sequence[str], since: datetime | None = None,
                  until: datetime | None = None) -> list[dict[str, Any]]:
    """``usage_summary`` in a session the caller holds (the monitor's read sessions)."""
    unknown = [b for b in by if b not in GROUPINGS]
    if unknown or not by:
        raise EpicWfmsError(f"cannot group usage by {unknown or 'nothing'}",
                            f"allowed: {', '.join(GROUPINGS)}", "choose one or more of those")
    columns = [getattr(ResourceUsageRecord, b) for b in by]
    query = select(*columns, func.sum(ResourceUsageRecord.core_seconds),
                   func.sum(ResourceUsageRecord.gpu_seconds), func.count())
    if since is not None:
        query = query.where(ResourceUsageRecord.ended_at >= since)
    if until is not None:
        query = query.where(ResourceUsageRecord.ended_at < until)
    query = query.group_by(*columns).order_by(*columns)
    return [{**dict(zip(by, row[:len(by)], strict=True)),
             "core_hours": round(row[len(by)] / 3600, 3),
             "gpu_hours": round((row[len(by) + 1] or 0) / 3600, 3),
             "jobs": row[len(by) + 2]} for row in session.execute(query)]


def decisions_by_site(db: Database, since: datetime | None = None) -> dict[str, int]:
    """How many jobs brokerage sent to each site (the monitor's fabric overview)."""
    query = select(BrokerageDecisionRecord.site, func.count()).where(
        BrokerageDecisionRecord.outcome == "assigned")
    if since is not None:
        query = query.where(BrokerageDecisionRecord.decided_at >= since)
    with db.session() as session:
        return dict(session.execute(query.group_by(BrokerageDecisionRecord.site)).all())
