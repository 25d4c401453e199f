"""Read model of the workload: PanDA tasks and jobs, workflow templates, their submissions and
campaigns, and what one user has in the system (R10.3, R10.4, R11.9).

Same conventions as ``monitor.queries`` (a Session in, JSON-ready data out, lists paged and
sortable); the REST API, the pages and the MCP server all read through these functions.
Ids stay PanDA's (``jediTaskID``, ``PandaID``); ``links`` add BigMon's pages when
``monitor.bigmon_url`` is configured.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, Select, func, inspect, select
from sqlalchemy.orm import Session

from epic_wfms.lifecycle.template import StepRunStatus
from epic_wfms.monitor.queries import as_dict, iso
from epic_wfms.store.schema import (
    OperatorCommandRecord,
    PandaJobRecord,
    PandaTaskRecord,
    ResourceUsageHourRecord,
    TemplateStepRunRecord,
    TemplateSubmissionRecord,
    utcnow,
)
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.loader import TemplateLibrary

TASK_FIELDS = ("jedi_task_id", "task_name", "kind", "status", "run_number", "site", "priority",
               "username", "campaign", "submission_id", "input_dataset", "error", "server",
               "submitted_at", "updated_at")
TASK_SORT = {"jedi_task_id", "status", "submitted_at", "updated_at", "priority", "run_number"}
PANDA_JOB_SORT = {"panda_id", "status", "site", "attempt_nr", "updated_at"}
SUBMISSION_FIELDS = ("id", "template", "template_version", "target", "dry_run", "campaign",
                     "activity", "status", "username", "priority", "runtime", "error",
                     "created_at", "finished_at", "rendered_hash")
SUBMISSION_SORT = {"id", "template", "campaign", "status", "created_at", "priority", "username"}
FAILED_TASK = ("failed", "broken", "aborted", "exhausted")
ENDED_TASK = ("done", "finished", *FAILED_TASK)


def links(bigmon_url: str | None, kind: str, ident: Any) -> dict[str, str]:
    """BigMon's page of a task or a job (its URL conventions: /task/ID/, /job/PANDAID/)."""
    if not bigmon_url:
        return {}
    return {"bigmon": f"{bigmon_url.rstrip('/')}/{kind}/{ident}/"}


def record_dict(record: Any) -> dict[str, Any]:
    """Every mapped attribute by its attribute name (``user`` of a ``username`` column)."""
    return {attr.key: iso(getattr(record, attr.key))
            for attr in inspect(record).mapper.column_attrs}


COUNT_CAP = 10_000  # lists of millions of rows count up to this many ("10,000 or more")


def rows_page(session: Session, query: Select, model: Any, sort: str | None, sortable: set[str],
              default: str, limit: int, offset: int) -> tuple[list[Any], dict[str, Any]]:
    """Like ``queries.paged`` but the records themselves (callers add to each item), and the
    page's ``total`` counted up to ``COUNT_CAP`` (``total_exact`` false beyond it: counting
    ten million PanDA jobs for a page would take seconds)."""
    key = (sort or default).strip()
    if key.lstrip("-") not in sortable:
        raise ValueError(f"cannot sort by {key.lstrip('-')!r}; sortable: "
                         f"{', '.join(sorted(sortable))}")
    column = getattr(model, key.lstrip("-"))
    total = session.scalar(select(func.count()).select_from(
        query.limit(COUNT_CAP + 1).subquery()))
    rows = session.scalars(query.order_by(column.desc() if key.startswith("-") else column)
                           .limit(limit).offset(offset)).all()
    return list(rows), {"total": min(total, COUNT_CAP), "total_exact": total <= COUNT_CAP,
                        "limit": limit, "offset": offset, "sort": key}


# -- PanDA tasks and jobs -----------------------------------------------------------------------
def _job_counts(session: Session, task_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per task: jobs by status, the highest attempt, jobs with an error (task index)."""
    out: dict[int, dict[str, Any]] = {t: {"jobs": {}, "max_attempt": 0, "errors": 0}
                                      for t in task_ids}
    if not task_ids:
        return out
    rows = session.execute(select(
        PandaJobRecord.jedi_task_id, PandaJobRecord.status, func.count(),
        func.max(PandaJobRecord.attempt_nr), func.count(PandaJobRecord.error),
    ).where(PandaJobRecord.jedi_task_id.in_(task_ids))
        .group_by(PandaJobRecord.jedi_task_id, PandaJobRecord.status)).all()
    for task, status, n, attempt, errors in rows:
        entry = out[task]
        entry["jobs"][status] = n
        entry["max_attempt"] = max(entry["max_attempt"], attempt or 0)
        entry["errors"] += errors
    return out


def _task_item(record: Any, counts: dict[str, Any], bigmon_url: str | None) -> dict[str, Any]:
    item = {name: iso(getattr(record, name)) for name in TASK_FIELDS}
    total = sum(counts["jobs"].values())
    done = counts["jobs"].get("finished", 0)
    return {**item, **counts, "n_jobs": total,
            "progress": round(done / total, 3) if total else None,
            "links": links(bigmon_url, "task", record.jedi_task_id)}


def tasks(session: Session, status: str | None = None, kind: str | None = None,
          run_number: int | None = None, site: str | None = None, user: str | None = None,
          campaign: str | None = None, submission: int | None = None, sort: str | None = None,
          limit: int = 50, offset: int = 0, bigmon_url: str | None = None) -> dict[str, Any]:
    """JEDI tasks as PanDA reported them, with their jobs by status."""
    query = select(PandaTaskRecord)
    for column, value in ((PandaTaskRecord.status, status), (PandaTaskRecord.kind, kind),
                          (PandaTaskRecord.run_number, run_number), (PandaTaskRecord.site, site),
                          (PandaTaskRecord.username, user), (PandaTaskRecord.campaign, campaign),
                          (PandaTaskRecord.submission_id, submission)):
        if value is not None:
            query = query.where(column == value)
    rows, page = rows_page(session, query, PandaTaskRecord, sort, TASK_SORT, "-jedi_task_id",
                           limit, offset)
    counts = _job_counts(session, [r.jedi_task_id for r in rows])
    return {"items": [_task_item(r, counts[r.jedi_task_id], bigmon_url) for r in rows], **page}


def task_detail(session: Session, task_id: int, job_status: str | None = None,
                limit: int = 100, offset: int = 0, bigmon_url: str | None = None
                ) -> dict[str, Any] | None:
    task = session.get(PandaTaskRecord, task_id)
    if task is None:
        return None
    counts = _job_counts(session, [task_id])[task_id]
    errors = session.execute(select(PandaJobRecord.error, func.count())
                             .where(PandaJobRecord.jedi_task_id == task_id,
                                    PandaJobRecord.error.is_not(None))
                             .group_by(PandaJobRecord.error)
                             .order_by(func.count().desc()).limit(10)).all()
    return {"task": _task_item(task, counts, bigmon_url),
            "params": task.params,
            "jobs": panda_jobs(session, status=job_status, task_id=task_id, limit=limit,
                               offset=offset, bigmon_url=bigmon_url),
            "errors": [{"error": e, "jobs": n} for e, n in errors],
            "commands": _commands(session, "task", str(task_id))}


def _commands(session: Session, kind: str, target: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(OperatorCommandRecord).where(
        OperatorCommandRecord.target_kind == kind, OperatorCommandRecord.target_id == target)
        .order_by(OperatorCommandRecord.id.desc()).limit(50)).all()
    return [as_dict(c) for c in rows]


def panda_jobs(session: Session, status: str | None = None, site: str | None = None,
               task_id: int | None = None, stf: str | None = None, sort: str | None = None,
               limit: int = 100, offset: int = 0, bigmon_url: str | None = None
               ) -> dict[str, Any]:
    query = select(PandaJobRecord)
    for column, value in ((PandaJobRecord.status, status), (PandaJobRecord.site, site),
                          (PandaJobRecord.jedi_task_id, task_id),
                          (PandaJobRecord.stf_filename, stf)):
        if value is not None:
            query = query.where(column == value)
    rows, page = rows_page(session, query, PandaJobRecord, sort, PANDA_JOB_SORT, "-panda_id",
                           limit, offset)
    return {"items": [as_dict(r) | {"links": links(bigmon_url, "job", r.panda_id)}
                      for r in rows], **page}


def panda_job_detail(session: Session, panda_id: int, bigmon_url: str | None = None
                     ) -> dict[str, Any] | None:
    job = session.get(PandaJobRecord, panda_id)
    if job is None:
        return None
    task = session.get(PandaTaskRecord, job.jedi_task_id)
    return {"job": {**as_dict(job), "links": links(bigmon_url, "job", panda_id)},
            "task": {name: iso(getattr(task, name)) for name in TASK_FIELDS}
            | {"links": links(bigmon_url, "task", task.jedi_task_id)}}


# -- templates, submissions, campaigns --------------------------------------------------------
def templates(session: Session, library: TemplateLibrary) -> list[dict[str, Any]]:
    """The template library with how often each template was submitted and how it ended."""
    usage: dict[str, Counter] = defaultdict(Counter)
    for name, status, n in session.execute(select(
            TemplateSubmissionRecord.template, TemplateSubmissionRecord.status, func.count())
            .group_by(TemplateSubmissionRecord.template, TemplateSubmissionRecord.status)):
        usage[name][status] = n
    out = []
    for name in library.names():
        try:
            spec, _ = library.load(name)
        except TemplateError as error:
            out.append({"name": name, "error": str(error), "submissions": dict(usage[name])})
            continue
        out.append({"name": name, "version": spec.version, "use_case": spec.use_case,
                    "description": spec.description.strip(),
                    "parameters": sorted(spec.parameters),
                    "submissions": dict(usage[name]), "total": sum(usage[name].values())})
    return out


def template_detail(session: Session, library: TemplateLibrary, name: str
                    ) -> dict[str, Any] | None:
    if name not in library.names():
        return None
    spec, _ = library.load(name)
    return {"template": {"name": name, "version": spec.version, "use_case": spec.use_case,
                         "description": spec.description.strip(),
                         "parameters": {k: p.model_dump(mode="json", exclude_none=True)
                                        for k, p in spec.parameters.items()},
                         "steps": [s.get("name") for s in spec.steps],
                         "campaign": spec.campaign},
            "submissions": submissions(session, template=name, limit=50)}


def _submission_item(record: Any) -> dict[str, Any]:
    return {name: iso(getattr(record, name)) for name in SUBMISSION_FIELDS}


def submissions(session: Session, template: str | None = None, campaign: str | None = None,
                user: str | None = None, status: str | None = None, target: str | None = None,
                sort: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    query = select(TemplateSubmissionRecord)
    for column, value in ((TemplateSubmissionRecord.template, template),
                          (TemplateSubmissionRecord.campaign, campaign),
                          (TemplateSubmissionRecord.username, user),
                          (TemplateSubmissionRecord.status, status),
                          (TemplateSubmissionRecord.target, target)):
        if value is not None:
            query = query.where(column == value)
    rows, page = rows_page(session, query, TemplateSubmissionRecord, sort, SUBMISSION_SORT, "-id",
                           limit, offset)
    steps = _steps_by_submission(session, [r.id for r in rows])
    items = [{**_submission_item(r), "steps": steps.get(r.id, {})} for r in rows]
    return {"items": items, **page}


def _steps_by_submission(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    """Step runs by status per submission (index on submission_id)."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    if ids:
        for sub, status, n in session.execute(select(
                TemplateStepRunRecord.submission_id, TemplateStepRunRecord.status, func.count())
                .where(TemplateStepRunRecord.submission_id.in_(ids))
                .group_by(TemplateStepRunRecord.submission_id, TemplateStepRunRecord.status)):
            out[sub][status] = n
    return out


def _step_progress(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """Progress by step over submissions: jobs by status, retries, iterations, failures."""
    if not ids:
        return []
    rows = session.execute(select(
        TemplateStepRunRecord.step, TemplateStepRunRecord.status, func.count(),
        func.sum((TemplateStepRunRecord.attempt > 1).cast(Integer)),
        func.max(TemplateStepRunRecord.iteration),
    ).where(TemplateStepRunRecord.submission_id.in_(ids))
        .group_by(TemplateStepRunRecord.step, TemplateStepRunRecord.status)).all()
    steps: dict[str, dict[str, Any]] = {}
    for step, status, n, retries, iterations in rows:
        entry = steps.setdefault(step, {"step": step, "jobs": {}, "retries": 0,
                                        "iterations": 0})
        entry["jobs"][status] = n
        entry["retries"] += int(retries or 0)
        entry["iterations"] = max(entry["iterations"], iterations or 0)
    for entry in steps.values():
        total = sum(entry["jobs"].values())
        finished = entry["jobs"].get(StepRunStatus.FINISHED, 0)
        entry["progress"] = round(finished / total, 3) if total else None
    return list(steps.values())


def _failures(session: Session, ids: list[int], limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(TemplateStepRunRecord).where(
        TemplateStepRunRecord.submission_id.in_(ids),
        TemplateStepRunRecord.status == StepRunStatus.FAILED)
        .order_by(TemplateStepRunRecord.id.desc()).limit(limit)).all() if ids else []
    return [{"submission_id": r.submission_id, "step": r.step, "job": r.job_index,
             "attempt": r.attempt, "iteration": r.iteration, "exit_code": r.exit_code,
             "message": (r.message or "").splitlines()[0][:300] if r.message else None,
             "ended_at": iso(r.ended_at)} for r in rows]


def submission_detail(session: Session, submission_id: int, bigmon_url: str | None = None
                      ) -> dict[str, Any] | None:
    record = session.get(TemplateSubmissionRecord, submission_id)
    if record is None:
        return None
    runs = session.scalars(select(TemplateStepRunRecord)
                           .where(TemplateStepRunRecord.submission_id == submission_id)
                           .order_by(TemplateStepRunRecord.id).limit(500)).all()
    return {"submission": _submission_item(record),
            "parameters": record.parameters, "tags": record.rendered.get("tags", {}),
            "campaign": record.rendered.get("campaign", {}),
            "steps": _step_progress(session, [submission_id]),
            "step_runs": [{**as_dict(r), "outputs": r.outputs.get("files", [])} for r in runs],
            "failures": _failures(session, [submission_id]),
            "tasks": tasks(session, submission=submission_id, limit=200,
                           bigmon_url=bigmon_url)["items"],
            "commands": _commands(session, "submission", str(submission_id))}


def campaigns(session: Session) -> list[dict[str, Any]]:
    """Every campaign: submissions by status, priority, users, PanDA tasks by status."""
    out: dict[str, dict[str, Any]] = {}
    for name, status, n, priority, first, last in session.execute(select(
            TemplateSubmissionRecord.campaign, TemplateSubmissionRecord.status, func.count(),
            func.max(TemplateSubmissionRecord.priority),
            func.min(TemplateSubmissionRecord.created_at),
            func.max(TemplateSubmissionRecord.created_at))
            .group_by(TemplateSubmissionRecord.campaign, TemplateSubmissionRecord.status)):
        entry = out.setdefault(name, {"campaign": name, "submissions": {}, "priority": None,
                                      "first": first, "last": last, "tasks": {}})
        entry["submissions"][status] = n
        if priority is not None:
            entry["priority"] = max(entry["priority"] or priority, priority)
        entry["first"], entry["last"] = min(entry["first"], first), max(entry["last"], last)
    for name, status, n in session.execute(select(
            PandaTaskRecord.campaign, PandaTaskRecord.status, func.count())
            .where(PandaTaskRecord.campaign != "")
            .group_by(PandaTaskRecord.campaign, PandaTaskRecord.status)):
        out.setdefault(name, {"campaign": name, "submissions": {}, "priority": None,
                              "first": None, "last": None, "tasks": {}})["tasks"][status] = n
    return sorted(({**e, "first": iso(e["first"]), "last": iso(e["last"]),
                    "total": sum(e["submissions"].values())} for e in out.values()),
                  key=lambda e: e["last"] or "", reverse=True)


def campaign_detail(session: Session, name: str, limit: int = 500,
                    bigmon_url: str | None = None) -> dict[str, Any] | None:
    """Progress of one campaign by step and by production tag, failures, retries, tasks."""
    records = session.scalars(select(TemplateSubmissionRecord)
                              .where(TemplateSubmissionRecord.campaign == name)
                              .order_by(TemplateSubmissionRecord.id.desc()).limit(limit)).all()
    task_page = tasks(session, campaign=name, limit=200, bigmon_url=bigmon_url)
    if not records and not task_page["total"]:
        return None
    ids = [r.id for r in records]
    by_tag: dict[str, dict[str, Any]] = {}
    for record in records:
        for kind, tag in (record.rendered.get("tags") or {}).items():
            entry = by_tag.setdefault(tag.get("tag", "?"), {"tag": tag.get("tag", "?"),
                                                            "kind": kind, "submissions": {}})
            entry["submissions"][record.status] = entry["submissions"].get(record.status, 0) + 1
    steps = _step_progress(session, ids)
    return {"campaign": name,
            "priority": max((r.priority for r in records if r.priority is not None),
                            default=None),
            "users": sorted({r.username for r in records if r.username}),
            "submissions": [{**_submission_item(r)} for r in records],
            "steps": steps, "tags": sorted(by_tag.values(), key=lambda e: e["tag"]),
            "failures": _failures(session, ids),
            "retries": sum(s["retries"] for s in steps),
            "tasks": task_page["items"], "tasks_total": task_page["total"]}


# -- a user's own page ------------------------------------------------------------------------
def user_work(session: Session, username: str, days: int = 30, bigmon_url: str | None = None
              ) -> dict[str, Any]:
    """What a user has in the system: their submissions, PanDA tasks, resource usage."""
    since = (utcnow() - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    h = ResourceUsageHourRecord
    usage = session.execute(select(h.workflow, h.site, h.status, func.sum(h.core_seconds),
                                   func.sum(h.jobs))
                            .where(h.user == username, h.hour >= since)
                            .group_by(h.workflow, h.site, h.status)).all()
    return {"submissions": submissions(session, user=username, limit=25)["items"],
            "tasks": tasks(session, user=username, limit=25, bigmon_url=bigmon_url)["items"],
            "resource_usage": {"days": days, "rows": [
                {"workflow": w, "site": s, "status": st, "core_hours": round(cs / 3600, 3),
                 "jobs": int(n)} for w, s, st, cs, n in usage]}}

