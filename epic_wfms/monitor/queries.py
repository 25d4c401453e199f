"""Read side of the monitor: one function per view, each a few indexed queries (docs/monitor.md).

Current-state views touch only the newest rows through indexes (runs by number, STFs of one
run, jobs by status, recent ``processed_at``), so they stay fast with a year of history.
Every function takes a Session and returns plain JSON-ready data.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from epic_wfms.lifecycle.job import JOB_ACTIVE, JOB_UNSUCCESSFUL, JobStatus
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.lifecycle.stf import STF_BACKLOG, ProcessingStatus
from epic_wfms.store.controls import sites_offline
from epic_wfms.store.schema import (
    AgentRecord,
    DeadLetterRecord,
    GateEventRecord,
    IntegrityIssueRecord,
    JobRecord,
    MergeRecord,
    OperatorCommandRecord,
    PandaJobRecord,
    ProvenanceRecord,
    ReplicaRecord,
    RestUsageRecord,
    RunRecord,
    StateTransitionRecord,
    StfRecord,
    utcnow,
)
from epic_wfms.streaming.report import percentile
from epic_wfms.streaming.run_outcome import session_shortfall

TIMELINE = (("produced", "available_at"), ("registered", "registered_at"),
            ("archived", "archived_at"), ("dispatched", "dispatched_at"),
            ("processed", "processed_at"))
LATENCY_WINDOW = 500  # STFs of the current run the latency percentiles are taken over


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def as_dict(record: Any, fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    names = fields or tuple(c.key for c in record.__table__.columns)
    return {name: iso(getattr(record, name)) for name in names}


def paged(session: Session, query: Select, model: Any, sort: str | None, sortable: set[str],
          default: str, limit: int, offset: int) -> dict[str, Any]:
    """Count, sort (``field`` or ``-field`` from ``sortable``) and slice a query."""
    key = (sort or default).strip()
    name = key.lstrip("-")
    if name not in sortable:
        raise ValueError(f"cannot sort by {name!r}; sortable: {', '.join(sorted(sortable))}")
    column = getattr(model, name)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    ordered = query.order_by(column.desc() if key.startswith("-") else column.asc())
    items = [as_dict(r) for r in session.scalars(ordered.limit(limit).offset(offset))]
    return {"items": items, "total": total, "limit": limit, "offset": offset, "sort": key}


# -- detector state ---------------------------------------------------------------------------
def detector_state(session: Session) -> dict[str, Any]:
    last = session.scalar(select(StateTransitionRecord)
                          .order_by(StateTransitionRecord.id.desc()).limit(1))
    if last is None:
        return {"state": "off", "substate": "not_ready", "flavour": None, "since": None,
                "run_number": None, "trigger": None}
    return {"state": last.to_state, "substate": last.to_substate, "flavour": last.flavour,
            "since": iso(last.occurred_at), "run_number": last.run_number,
            "trigger": last.trigger}


def transitions(session: Session, limit: int = 50, offset: int = 0,
                run_number: int | None = None) -> dict[str, Any]:
    query = select(StateTransitionRecord)
    if run_number is not None:
        query = query.where(StateTransitionRecord.run_number == run_number)
    return paged(session, query, StateTransitionRecord, "-id", {"id"}, "-id", limit, offset)


# -- runs and STFs --------------------------------------------------------------------------
def run_counts(session: Session, run_number: int | None) -> dict[str, int]:
    """STFs of a run at each pipeline stage (one indexed scan of that run's rows)."""
    s = StfRecord
    row = session.execute(select(
        func.count(), func.count(s.registered_at), func.count(s.archived_at),
        func.count(s.dispatched_at), func.count(s.processed_at), func.count(s.merge_id),
    ).where(s.run_number == run_number)).one()
    counts = dict(zip(("produced", "registered", "archived", "dispatched", "processed",
                       "merged"), row, strict=True))
    status = dict(session.execute(select(s.processing_status, func.count())
                                  .where(s.run_number == run_number)
                                  .group_by(s.processing_status)).all())
    counts["failed"] = status.get(ProcessingStatus.FAILED, 0)
    counts["backlog"] = sum(status.get(k, 0) for k in STF_BACKLOG)
    return counts


def stage_latencies(session: Session, run_number: int | None) -> dict[str, dict[str, Any]]:
    """p50/p95 seconds of each stage over the run's newest STFs."""
    rows = session.execute(
        select(*(getattr(StfRecord, col) for _, col in TIMELINE))
        .where(StfRecord.run_number == run_number)
        .order_by(StfRecord.sequence.desc()).limit(LATENCY_WINDOW)).all()
    stages = {"register": (0, 1), "archive": (1, 2), "dispatch": (1, 3), "process": (3, 4),
              "end_to_end": (0, 4)}
    out = {}
    for name, (a, b) in stages.items():
        values = [(r[b] - r[a]).total_seconds() for r in rows if r[a] and r[b]]
        p50, p95 = percentile(values, 50), percentile(values, 95)
        out[name] = {"n": len(values), "p50_s": _round(p50), "p95_s": _round(p95)}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def current_run(session: Session) -> dict[str, Any] | None:
    run = session.scalar(select(RunRecord).order_by(RunRecord.number.desc()).limit(1))
    if run is None:
        return None
    return {**as_dict(run), "counts": run_counts(session, run.number),
            "latency": stage_latencies(session, run.number)}


RUN_SORT = {"number", "status", "run_type", "start_time", "end_time"}


def runs(session: Session, status: str | None = None, run_type: str | None = None,
         sort: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    query = select(RunRecord)
    if status:
        query = query.where(RunRecord.status == status)
    if run_type:
        query = query.where(RunRecord.run_type == run_type)
    page = paged(session, query, RunRecord, sort, RUN_SORT, "-number", limit, offset)
    # STFs received are counted for runs still going; a finished run shows the count the DAQ
    # declared at end_run (counting 50 finished runs would read ~50k index entries a page)
    live = [r["number"] for r in page["items"] if r["status"] != RunStatus.FINISHED]
    stf_counts = dict(session.execute(
        select(StfRecord.run_number, func.count()).where(StfRecord.run_number.in_(live))
        .group_by(StfRecord.run_number)).all()) if live else {}
    for item in page["items"]:
        item["stfs"] = stf_counts.get(item["number"], item["total_stfs"] or 0)
    return page


def run_detail(session: Session, number: int) -> dict[str, Any] | None:
    run = session.get(RunRecord, number)
    if run is None:
        return None
    merges = session.scalars(select(MergeRecord).where(MergeRecord.run_number == number)
                             .order_by(MergeRecord.id)).all()
    jobs = session.execute(select(JobRecord.kind, JobRecord.status, func.count())
                           .where(JobRecord.run_number == number)
                           .group_by(JobRecord.kind, JobRecord.status)).all()
    issues = session.scalars(select(IntegrityIssueRecord)
                             .where(IntegrityIssueRecord.run_number == number)
                             .order_by(IntegrityIssueRecord.id.desc()).limit(50)).all()
    gates = session.scalars(select(GateEventRecord).where(GateEventRecord.run_number == number)
                            .order_by(GateEventRecord.id)).all()
    letters = session.scalars(select(DeadLetterRecord).where(DeadLetterRecord.run_number == number)
                              .order_by(DeadLetterRecord.id.desc()).limit(50)).all()
    return {"run": as_dict(run), "counts": run_counts(session, number),
            "latency": stage_latencies(session, number),
            "merges": [as_dict(m) for m in merges],
            "jobs": [{"kind": k, "status": s, "count": n} for k, s, n in jobs],
            "issues": [as_dict(i) for i in issues], "gate_events": [as_dict(g) for g in gates],
            "dead_letters": [as_dict(d, DEAD_LETTER_FIELDS) for d in letters],
            "shortfall": session_shortfall(session, number)}


DEAD_LETTER_FIELDS = ("id", "msg_type", "subscription", "reason", "created_at", "resolved_at",
                      "resolution")


STF_FIELDS = ("filename", "run_number", "sequence", "state", "substate", "size_bytes",
              "validation", "archive_status", "processing_status", "site", "available_at",
              "registered_at", "archived_at", "dispatched_at", "processed_at", "merge_id",
              "reco_output")
STF_SORT = {"sequence", "id", "available_at", "processed_at", "filename"}


def stfs(session: Session, run_number: int | None = None, processing_status: str | None = None,
         archive_status: str | None = None, site: str | None = None, sort: str | None = None,
         limit: int = 100, offset: int = 0) -> dict[str, Any]:
    query = select(StfRecord)
    for column, value in ((StfRecord.run_number, run_number),
                          (StfRecord.processing_status, processing_status),
                          (StfRecord.archive_status, archive_status), (StfRecord.site, site)):
        if value is not None:
            query = query.where(column == value)
    page = paged(session, query, StfRecord, sort, STF_SORT,
                 "sequence" if run_number is not None else "-id", limit, offset)
    page["items"] = [{k: item[k] for k in STF_FIELDS} | {"timeline": stf_timeline(item)}
                     for item in page["items"]]
    return page


def stf_timeline(stf: dict[str, Any], merged_at: str | None = None) -> list[dict[str, Any]]:
    """produced -> registered -> archived -> dispatched -> processed -> merged, with gaps."""
    steps = [{"step": step, "at": stf[col], "done": stf[col] is not None}
             for step, col in TIMELINE]
    steps.append({"step": "merged", "at": merged_at, "done": stf.get("merge_id") is not None})
    return steps


def stf_detail(session: Session, filename: str) -> dict[str, Any] | None:
    stf = session.scalar(select(StfRecord).where(StfRecord.filename == filename))
    if stf is None:
        return None
    data = as_dict(stf)
    merge = session.get(MergeRecord, stf.merge_id) if stf.merge_id else None
    jobs = session.scalars(select(JobRecord).where(JobRecord.stf_filename == filename)
                           .order_by(JobRecord.id)).all()
    panda_jobs = session.scalars(select(PandaJobRecord).where(  # its attempts on PanDA
        PandaJobRecord.stf_filename == filename).order_by(PandaJobRecord.panda_id)).all()
    return {"stf": data, "timeline": stf_timeline(data, iso(merge.created_at) if merge else None),
            "merge": as_dict(merge) if merge else None,
            "jobs": [as_dict(j) for j in jobs],
            "panda_jobs": [as_dict(j) for j in panda_jobs],
            "provenance": provenance(session, filename)}


# -- jobs, merges, provenance -------------------------------------------------------------------
JOB_SORT = {"id", "status", "site", "kind", "created_at", "ended_at", "run_number"}


def jobs(session: Session, status: str | None = None, site: str | None = None,
         kind: str | None = None, run_number: int | None = None, stf: str | None = None,
         sort: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    query = select(JobRecord)
    for column, value in ((JobRecord.status, status), (JobRecord.site, site),
                          (JobRecord.kind, kind), (JobRecord.run_number, run_number),
                          (JobRecord.stf_filename, stf)):
        if value is not None:
            query = query.where(column == value)
    page = paged(session, query, JobRecord, sort, JOB_SORT, "-id", limit, offset)
    for item in page["items"]:
        item["diagnosis"] = (diagnose(item["error"]) if item["status"] in JOB_UNSUCCESSFUL
                             else None)
    return page


def job_detail(session: Session, job_id: int) -> dict[str, Any] | None:
    job = session.get(JobRecord, job_id)
    if job is None:
        return None
    edges = session.scalars(select(ProvenanceRecord).where(ProvenanceRecord.job_id == job_id)
                            ).all()
    commands = session.scalars(select(OperatorCommandRecord).where(
        OperatorCommandRecord.target_kind == "job", OperatorCommandRecord.target_id == str(job_id))
        .order_by(OperatorCommandRecord.id)).all()
    data = as_dict(job)
    data["diagnosis"] = diagnose(job.error) if job.status in JOB_UNSUCCESSFUL else None
    return {"job": data, "inputs": sorted({e.input_name for e in edges}),
            "outputs": sorted({e.output_name for e in edges}),
            "commands": [as_dict(c) for c in commands],
            "priority": priority_of(session, "job", str(job_id))}


DIAGNOSES = (  # error text -> diagnosis shown to users (R10.3)
    (r"exceeded \d+s", "timeout", "the payload ran past the time limit"),
    (r"lost", "lost heartbeat", "the agent running the job stopped; it is retried"),
    (r"pilot \d+ (died|unavailable)", "pilot crash", "the worker's pilot process died"),
    (r"inject", "injected failure", "fault injection of a demo or test"),
    (r"killed by", "killed", "an operator killed the job"),
    (r"could not start", "payload missing", "the payload could not be started at the site"),
)


def diagnose(error: str | None) -> dict[str, str]:
    text = error or ""
    for pattern, label, explanation in DIAGNOSES:
        if re.search(pattern, text, re.IGNORECASE):
            return {"category": label, "explanation": explanation}
    return {"category": "payload error", "explanation": (text.splitlines() or ["no message"])[-1]}


def merges(session: Session, run_number: int | None = None, status: str | None = None,
           limit: int = 100, offset: int = 0) -> dict[str, Any]:
    query = select(MergeRecord)
    if run_number is not None:
        query = query.where(MergeRecord.run_number == run_number)
    if status:
        query = query.where(MergeRecord.status == status)
    return paged(session, query, MergeRecord, "-id", {"id"}, "-id", limit, offset)


def provenance(session: Session, name: str, depth: int = 6) -> dict[str, Any]:
    """Ancestors (inputs, recursively) and descendants (outputs) of any file, with jobs."""
    def walk(start: str, forward: bool) -> list[dict[str, Any]]:
        src, dst = ((ProvenanceRecord.input_name, ProvenanceRecord.output_name) if forward
                    else (ProvenanceRecord.output_name, ProvenanceRecord.input_name))
        edges, frontier, seen = [], {start}, {start}
        for level in range(1, depth + 1):
            rows = session.execute(select(src, dst, ProvenanceRecord.job_id)
                                   .where(src.in_(frontier))).all() if frontier else []
            frontier = set()
            for a, b, job_id in rows:
                edges.append({"from": a, "to": b, "job_id": job_id, "level": level})
                if b not in seen:
                    seen.add(b)
                    frontier.add(b)
        return edges

    replicas = session.scalars(select(ReplicaRecord).where(ReplicaRecord.name == name)).all()
    return {"name": name, "parents": walk(name, False), "children": walk(name, True),
            "replicas": [{"rse": r.rse, "state": r.state, "path": r.path} for r in replicas]}


# -- operations: issues, agents, gates, sites, users -----------------------------------------------
def issues(session: Session, open_only: bool = True, run_number: int | None = None,
           kind: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    query = select(IntegrityIssueRecord)
    if open_only:
        query = query.where(IntegrityIssueRecord.resolved_at.is_(None))
    if run_number is not None:
        query = query.where(IntegrityIssueRecord.run_number == run_number)
    if kind:
        query = query.where(IntegrityIssueRecord.kind == kind)
    return paged(session, query, IntegrityIssueRecord, "-id", {"id"}, "-id", limit, offset)


def agents(session: Session) -> list[dict[str, Any]]:
    now = utcnow()
    rows = session.scalars(select(AgentRecord).order_by(AgentRecord.name)).all()
    return [{**as_dict(a), "heartbeat_age_s": round((now - a.heartbeat_at).total_seconds(), 1)}
            for a in rows]


def gate_events(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(GateEventRecord).order_by(GateEventRecord.id.desc())
                           .limit(limit)).all()
    return [as_dict(g) for g in rows]


def processing_hold(session: Session) -> dict[str, Any] | None:
    """The operator's hold on processing, if the latest suspend/resume command is a suspend."""
    last = session.scalar(select(OperatorCommandRecord).where(
        OperatorCommandRecord.action.in_(("suspend", "resume")))
        .order_by(OperatorCommandRecord.id.desc()).limit(1))
    return as_dict(last) if last is not None and last.action == "suspend" else None


def priority_of(session: Session, kind: str, target: str) -> int | None:
    last = session.scalar(select(OperatorCommandRecord).where(
        OperatorCommandRecord.action == "priority", OperatorCommandRecord.target_kind == kind,
        OperatorCommandRecord.target_id == target).order_by(OperatorCommandRecord.id.desc())
        .limit(1))
    return None if last is None else int(last.params["priority"])


def backlog(session: Session) -> dict[str, dict[str, int]]:
    """STFs waiting or in flight per site and status (index on processing_status, site)."""
    rows = session.execute(select(StfRecord.site, StfRecord.processing_status, func.count())
                           .where(StfRecord.processing_status.in_(STF_BACKLOG))
                           .group_by(StfRecord.site, StfRecord.processing_status)).all()
    out: dict[str, dict[str, int]] = {}
    for site, status, n in rows:
        out.setdefault(site or "unassigned", {})[status] = n
    return out


def throughput(session: Session, minutes: int = 60, bins: int = 30) -> dict[str, Any]:
    """STFs received and processed per bin over the last ``minutes`` (indexed time ranges)."""
    now = utcnow()
    since = now - timedelta(minutes=minutes)
    width = minutes * 60 / bins

    def binned(column: Any) -> list[int]:
        counts = [0] * bins
        for (at,) in session.execute(select(column).where(column >= since)):
            index = int((at - since).total_seconds() // width)
            counts[min(max(index, 0), bins - 1)] += 1
        return counts

    return {"since": iso(since), "bin_s": width, "received": binned(StfRecord.received_at),
            "processed": binned(StfRecord.processed_at)}


def sites(session: Session, configured: list[dict[str, Any]], hours: int = 24
          ) -> list[dict[str, Any]]:
    since = utcnow() - timedelta(hours=hours)
    ended = session.execute(select(JobRecord.site, JobRecord.status, func.count())
                            .where(JobRecord.ended_at >= since)
                            .group_by(JobRecord.site, JobRecord.status)).all()
    active = session.execute(select(JobRecord.site, JobRecord.status, func.count())
                             .where(JobRecord.status.in_(JOB_ACTIVE))
                             .group_by(JobRecord.site, JobRecord.status)).all()
    queue = backlog(session)
    offline = sites_offline(session)
    out = []
    for site in configured:
        done = {s: n for st, s, n in ended if st == site["name"]}
        finished, failed = done.get(JobStatus.FINISHED, 0), done.get(JobStatus.FAILED, 0)
        off = offline.get(site["name"])
        out.append({**site, "offline": {"reason": off.reason, "by": off.by,
                                        "since": iso(off.since)} if off else None,
                    "jobs_recent": done,
                    "jobs_active": {s: n for st, s, n in active if st == site["name"]},
                    "failure_rate": round(failed / (finished + failed), 3)
                    if finished + failed else None,
                    "backlog": sum(queue.get(site["name"], {}).values()), "window_h": hours})
    return out


def user_dashboard(session: Session, username: str, limit: int = 50) -> dict[str, Any]:
    commands = session.scalars(select(OperatorCommandRecord)
                               .where(OperatorCommandRecord.username == username)
                               .order_by(OperatorCommandRecord.id.desc()).limit(limit)).all()
    usage = session.scalars(select(RestUsageRecord).where(RestUsageRecord.username == username)
                            .order_by(RestUsageRecord.day.desc(), RestUsageRecord.calls.desc())
                            .limit(limit)).all()
    touched = [c.target_id for c in commands if c.target_kind == "job"]
    failed = session.scalars(select(JobRecord).where(
        JobRecord.status.in_(JOB_UNSUCCESSFUL),
        or_(JobRecord.id.in_([int(t) for t in touched if t.isdigit()]),
            JobRecord.ended_at >= utcnow() - timedelta(hours=24)))
        .order_by(JobRecord.id.desc()).limit(limit)).all()
    return {"user": username, "commands": [as_dict(c) for c in commands],
            "usage": [as_dict(u) for u in usage],
            "failures": [{**as_dict(j), "diagnosis": diagnose(j.error)} for j in failed]}


def usage(session: Session, username: str | None = None, limit: int = 200) -> list[dict]:
    query = select(RestUsageRecord)
    if username:
        query = query.where(RestUsageRecord.username == username)
    rows = session.scalars(query.order_by(RestUsageRecord.day.desc(),
                                          RestUsageRecord.calls.desc()).limit(limit)).all()
    return [as_dict(r) for r in rows]


def summary(session: Session, hours: int = 24) -> dict[str, Any]:
    """Aggregates over a recent window (indexed by received_at / ended_at)."""
    since = utcnow() - timedelta(hours=hours)
    stf_status = dict(session.execute(select(StfRecord.processing_status, func.count())
                                      .where(StfRecord.received_at >= since)
                                      .group_by(StfRecord.processing_status)).all())
    job_status = dict(session.execute(select(JobRecord.status, func.count())
                                      .where(JobRecord.ended_at >= since)
                                      .group_by(JobRecord.status)).all())
    runs_by_status = dict(session.execute(select(RunRecord.status, func.count())
                                          .group_by(RunRecord.status)).all())
    open_issues = dict(session.execute(select(IntegrityIssueRecord.kind, func.count())
                                       .where(IntegrityIssueRecord.resolved_at.is_(None))
                                       .group_by(IntegrityIssueRecord.kind)).all())
    return {"window_h": hours, "stfs_by_processing_status": stf_status,
            "jobs_ended_by_status": job_status, "runs_by_status": runs_by_status,
            "open_issues": open_issues, "backlog": backlog(session)}


def dashboard(session: Session) -> dict[str, Any]:
    return {"detector": detector_state(session), "run": current_run(session),
            "backlog": backlog(session), "throughput": throughput(session, minutes=10),
            "gate_events": gate_events(session, 8), "hold": processing_hold(session),
            "issues": issues(session, limit=8)["items"], "agents": agents(session)}


def pulse(session: Session) -> list[Any]:
    """Cheap change detector for live pages: newest ids and times on indexed columns."""
    row = session.execute(select(
        select(func.max(StfRecord.id)).scalar_subquery(),
        select(func.max(StfRecord.processed_at)).scalar_subquery(),
        select(func.max(JobRecord.id)).scalar_subquery(),
        select(func.max(JobRecord.ended_at)).scalar_subquery(),
        select(func.max(StateTransitionRecord.id)).scalar_subquery(),
        select(func.max(GateEventRecord.id)).scalar_subquery(),
        select(func.max(IntegrityIssueRecord.id)).scalar_subquery(),
        select(func.max(MergeRecord.id)).scalar_subquery(),
        select(func.max(OperatorCommandRecord.id)).scalar_subquery(),
        select(func.max(RunRecord.number)).scalar_subquery(),
    )).one()
    return [iso(v) for v in row]
