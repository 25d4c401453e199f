"""Read model of the fabric: brokerage decisions with their reasons, sites of the catalogue
with health and shares, and resource usage by workflow, user and site over a period
(R5.4, R8.5, R8.6, R10.5, R10.9). Same conventions as ``monitor.queries``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, func, select
from sqlalchemy.orm import Session

from epic_wfms.brokerage.health import AVOIDED, OFFLINE, OK, HealthPolicy
from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.monitor.queries import iso
from epic_wfms.monitor.workload import record_dict, rows_page
from epic_wfms.sites.models import Site
from epic_wfms.store.accounting import GROUPINGS
from epic_wfms.store.controls import sites_offline
from epic_wfms.store.schema import (
    BrokerageDecisionRecord,
    ResourceUsageHourRecord,
    ResourceUsageRecord,
    utcnow,
)

DEGRADED, IDLE = "degraded", "idle"
DECISION_SORT = {"id", "decided_at", "score", "site"}


def decisions(session: Session, site: str | None = None, outcome: str | None = None,
              activity: str | None = None, user: str | None = None,
              workflow: str | None = None, job_ref: str | None = None, hours: int = 24,
              sort: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """Brokerage decisions of the last ``hours`` (all of a job's when ``job_ref`` is given),
    newest first, each with its structured reasons and a one-line summary."""
    query = select(BrokerageDecisionRecord)
    if job_ref is None:
        query = query.where(BrokerageDecisionRecord.decided_at >= utcnow() - timedelta(
            hours=hours))
    for column, value in ((BrokerageDecisionRecord.site, site),
                          (BrokerageDecisionRecord.outcome, outcome),
                          (BrokerageDecisionRecord.activity, activity),
                          (BrokerageDecisionRecord.user, user),
                          (BrokerageDecisionRecord.workflow, workflow),
                          (BrokerageDecisionRecord.job_ref, job_ref)):
        if value is not None:
            query = query.where(column == value)
    rows, page = rows_page(session, query, BrokerageDecisionRecord, sort, DECISION_SORT,
                           "-decided_at", limit, offset)
    items = [record_dict(r) for r in rows]
    return {"items": [{**item, "summary": explain(item)} for item in items], **page,
            "hours": hours}


def explain(decision: dict[str, Any]) -> str:
    """One line for people: where and why (the components of the score, the runner-up)."""
    reasons = decision.get("reasons") or {}
    if decision["outcome"] != "assigned":
        return f"{decision['outcome']}: {reasons.get('summary', '')}".strip(": ")
    if "components" not in reasons and reasons.get("summary"):  # an STF route or reroute
        return f"{decision['site']}/{decision['queue']}: {reasons['summary']}"
    parts = ", ".join(f"{k} {v:.2f}" for k, v in (reasons.get("components") or {}).items()
                      if isinstance(v, int | float))
    runner = reasons.get("runner_up")
    versus = (f"; runner-up {runner.get('queue')} ({runner.get('score', 0):.2f})"
              if isinstance(runner, dict) else "")
    return f"{decision['site']}/{decision['queue']} score {decision['score']:.2f}" + (
        f" ({parts})" if parts else "") + versus


def site_health(session: Session, policy: HealthPolicy | None = None
                ) -> dict[str, dict[str, Any]]:
    """Health now, from the outcomes recorded in the policy's window (as brokerage judges it):
    avoided (enough failures, a high enough share), degraded (some), ok, or idle (none)."""
    policy = policy or HealthPolicy()
    since = utcnow() - timedelta(seconds=policy.window_s)
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for site, status, n in session.execute(select(
            ResourceUsageRecord.site, ResourceUsageRecord.status, func.count())
            .where(ResourceUsageRecord.ended_at >= since)
            .group_by(ResourceUsageRecord.site, ResourceUsageRecord.status)):
        counts[site][status] = n
    out = {}
    for site, by_status in counts.items():
        failed, total = by_status.get(JobStatus.FAILED, 0), sum(by_status.values())
        state = (AVOIDED if failed >= policy.min_failures
                 and failed / total >= policy.failure_ratio else DEGRADED if failed else OK)
        out[site] = {"state": state, "failed": failed, "outcomes": total,
                     "window_s": policy.window_s}
    return out


def fabric_sites(session: Session, catalogue: list[Site], hours: int = 24
                 ) -> list[dict[str, Any]]:
    """Every catalogue site: size, shares (target and used in the period), health, the jobs
    brokerage sent there and the core-hours used there in the period."""
    since = utcnow() - timedelta(hours=hours)
    assigned = dict(session.execute(select(BrokerageDecisionRecord.site, func.count()).where(
        BrokerageDecisionRecord.outcome == "assigned", BrokerageDecisionRecord.decided_at >= since)
        .group_by(BrokerageDecisionRecord.site)).all())
    used: dict[str, dict[str, float]] = defaultdict(dict)
    h = ResourceUsageHourRecord
    for site, activity, seconds in session.execute(
            select(h.site, h.activity, func.sum(h.core_seconds))
            .where(h.hour >= since.replace(minute=0, second=0, microsecond=0))
            .group_by(h.site, h.activity)):
        used[site][activity] = seconds / 3600
    health = site_health(session)
    offline = sites_offline(session)
    out = []
    for site in catalogue:
        core_hours = sum(used[site.name].values())
        out.append({
            "name": site.name, "echelon": site.echelon, "institution": site.institution,
            "kind": site.kind, "pledged": site.pledged, "cores": site.cores,
            "queues": len(site.queues), "shares": dict(site.shares),
            "used_share": {a: round(h / core_hours, 3) for a, h in used[site.name].items()}
            if core_hours else {},
            "core_hours": round(core_hours, 3), "assigned": assigned.get(site.name, 0),
            "health": {"state": OFFLINE, "reason": offline[site.name].reason,
                       "by": offline[site.name].by, "failed": 0, "outcomes": 0}
            if site.name in offline else health.get(
                site.name, {"state": IDLE, "failed": 0, "outcomes": 0}),
            "window_h": hours})
    return out


def _epoch_bucket(session: Session, column: Any, width_s: int) -> Any:
    """The bin index of a timestamp column, on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(func.extract("epoch", column) / width_s).cast(Integer)
    seconds = (func.julianday(column) - 2440587.5) * 86400.0
    return (seconds.cast(Float) / width_s).cast(Integer)


def resources(session: Session, by: str = "site", hours: int = 24 * 7,
              until: datetime | None = None, top: int = 6) -> dict[str, Any]:
    """Core-hours, GPU-hours and jobs by ``by`` (workflow, user, site, activity, queue) over
    the period (whole hours of the jobs' ends, from the hourly sums), plus core-hours per bin
    for the ``top`` groups (a plot over time)."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group resource usage by {by!r}; use one of "
                         f"{', '.join(GROUPINGS)}")
    until = until or utcnow()
    since = (until - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    h = ResourceUsageHourRecord
    column = getattr(h, by)
    period = (h.hour >= since, h.hour < until)
    rows = [{by: group, "core_hours": round(core / 3600, 3), "gpu_hours": round(gpu / 3600, 3),
             "jobs": int(jobs)} for group, core, gpu, jobs in session.execute(
        select(column, func.sum(h.core_seconds), func.sum(h.gpu_seconds), func.sum(h.jobs))
        .where(*period).group_by(column).order_by(func.sum(h.core_seconds).desc()))]
    width = 3600 if hours <= 48 else 86400 if hours > 24 * 14 else 6 * 3600
    leaders = [r[by] for r in rows[:top]]
    bucket = _epoch_bucket(session, h.hour, width)
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if leaders:
        for group, index, seconds in session.execute(
                select(column, bucket, func.sum(h.core_seconds))
                .where(*period, column.in_(leaders)).group_by(column, bucket).order_by(bucket)):
            series[group].append((float(index * width), round(seconds / 3600, 3)))
    return {"by": by, "since": iso(since), "until": iso(until), "hours": hours,
            "bin_s": width, "rows": rows,
            "totals": {"core_hours": round(sum(r["core_hours"] for r in rows), 3),
                       "gpu_hours": round(sum(r["gpu_hours"] for r in rows), 3),
                       "jobs": sum(r["jobs"] for r in rows)},
            "series": {g: series[g] for g in leaders}}
