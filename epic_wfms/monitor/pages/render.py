"""Rendering: a page is a template plus its data; ``?json`` returns the data instead."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from epic_wfms.lifecycle.agent import AgentStatus
from epic_wfms.lifecycle.fastpath import SliceStatus, WorkerStatus
from epic_wfms.lifecycle.job import JOB_ACTIVE, JOB_UNSUCCESSFUL, JobKind, JobStatus
from epic_wfms.lifecycle.merge import MergeStatus
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.lifecycle.stf import ArchiveStatus, ProcessingStatus, Validation
from epic_wfms.lifecycle.template import SubmissionStatus

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))

J, P, A, R, U = JobStatus, ProcessingStatus, ArchiveStatus, RunStatus, SubmissionStatus
TONES: dict[str, set[str]] = {  # BigMon-like colours by state name, whatever its vocabulary
    "ok": {J.FINISHED, P.PROCESSED, P.MERGED, MergeStatus.DONE, Validation.OK, A.ARCHIVED,
           R.CLOSED, SliceStatus.COMPLETED, U.FINISHED, "resumed",
           "assigned"},  # brokerage outcome
    "run": {J.RUNNING, P.RUNNING, R.OPEN, SliceStatus.PROCESSING, U.RUNNING,
            "scouting"},  # PanDA task
    "act": {J.ACTIVATED, J.DEFINED, P.QUEUED, P.ACTIVATED, A.PENDING, R.ANNOUNCED,
            WorkerStatus.REGISTERED, U.SUBMITTED, "registered",
            "ready"},  # PanDA task
    "warn": {P.RETRYING, P.DEFERRED, "suspended",
             "degraded", "probing"},  # site health
    "bad": {J.FAILED, J.CANCELLED, P.FAILED, P.REJECTED, Validation.CORRUPT, WorkerStatus.DEAD,
            U.CANCELLED, "broken", "aborted", "exhausted",  # PanDA task
            "no_candidate", "avoided", "offline"},  # brokerage outcome, site health, operator
    "muted": {P.NOT_REQUIRED, P.WAITING, A.NOT_ARCHIVED, AgentStatus.STOPPED,
              WorkerStatus.EXITED, U.DRY_RUN, "idle"},
}
STATE_CLASSES = {str(state): tone for tone, states in TONES.items() for state in states}
# the choices of the pages' status filters
STATUSES = {"run": list(RunStatus), "job": list(JobStatus), "job_kind": list(JobKind),
            "stf_processing": list(ProcessingStatus), "stf_archive": list(ArchiveStatus)}
GROUPS = {"job_active": JOB_ACTIVE, "job_unsuccessful": JOB_UNSUCCESSFUL}  # what pages offer


def state_class(value: Any) -> str:
    return "st-" + STATE_CLASSES.get(str(value), "muted")


def short_time(value: Any) -> Markup | str:
    """``MM-DD HH:MM:SS`` (UTC) in a <time> with the full ISO time: tables stay narrow."""
    if not value:
        return "\u2013"
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(
        at.isoformat(), at.strftime("%m-%d %H:%M:%S"))


def seconds_between(a: Any, b: Any) -> str:
    if not a or not b:
        return ""
    delta = (datetime.fromisoformat(str(b)) - datetime.fromisoformat(str(a))).total_seconds()
    return f"+{delta:.2f} s"


def query_with(request: Request, **changes: Any) -> str:
    """The current URL's query string with some parameters changed (filter/paging links)."""
    params = dict(request.query_params)
    params.pop("json", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    from urllib.parse import urlencode
    return "?" + urlencode(params) if params else "?"


templates.env.filters.update(state=state_class, t=short_time)
templates.env.globals.update(seconds_between=seconds_between, query_with=query_with,
                             statuses=STATUSES, groups=GROUPS)


def wants_json(request: Request) -> bool:
    return "json" in request.query_params or request.headers.get(
        "accept", "").startswith("application/json")


def page(request: Request, template: str, data: dict[str, Any], title: str,
         status_code: int = 200, plots: dict[str, Any] | None = None
         ) -> HTMLResponse | JSONResponse:
    """``plots``: SVG rendered from ``data`` for the HTML page only (``?json`` has the data)."""
    if wants_json(request):
        return JSONResponse(data, status_code=status_code)
    return templates.TemplateResponse(request, template, {
        "data": data, "title": title, "nav": template.removesuffix(".html"),
        "plots": plots or {}}, status_code=status_code)
