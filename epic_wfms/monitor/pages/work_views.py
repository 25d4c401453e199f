"""Pages of the workload and the fabric: tasks and PanDA jobs, templates, submissions,
campaigns, the fast path, brokerage, catalogue sites and resource usage. Each reads through the
same functions as the REST API and answers ``?json`` with its data; plots are SVG rendered
here from that data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from epic_wfms.monitor import fabric, fastpath_view, plots, workload
from epic_wfms.monitor.api.params import (
    Filter,
    Hours,
    Limit,
    Name,
    Offset,
    RunNumber,
    RunPath,
    Sort,
)
from epic_wfms.monitor.api.work import GroupBy, PandaIdPath, Period, SubmissionPath, TaskPath
from epic_wfms.monitor.pages.render import page
from epic_wfms.monitor.pages.views import missing
from epic_wfms.monitor.state import MonitorState, monitor_state, read_session

router = APIRouter(include_in_schema=False)
Db = Depends(read_session)
State = Depends(monitor_state)


@router.get("/tasks")
def tasks(request: Request, session: Session = Db, state: MonitorState = State,
          status: Filter = None, kind: Filter = None, run: RunNumber = None, site: Filter = None,
          user: Filter = None, campaign: Filter = None, sort: Sort = None, limit: Limit = 50,
          offset: Offset = 0) -> Any:
    data = workload.tasks(session, status, kind, run, site, user, campaign, None, sort, limit,
                          offset, state.bigmon_url)
    return page(request, "tasks.html", data, "Tasks")


@router.get("/tasks/{task_id}")
def task(request: Request, task_id: TaskPath, session: Session = Db,
         state: MonitorState = State, job_status: Filter = None, limit: Limit = 100,
         offset: Offset = 0) -> Any:
    data = workload.task_detail(session, task_id, job_status, limit, offset, state.bigmon_url)
    if data is None:
        return missing(request, f"task {task_id} is not in the store", "see the list of tasks")
    return page(request, "task.html", data, f"Task {task_id}")


@router.get("/pandajobs")
def panda_jobs(request: Request, session: Session = Db, state: MonitorState = State,
               status: Filter = None, site: Filter = None, sort: Sort = None,
               limit: Limit = 100, offset: Offset = 0) -> Any:
    data = workload.panda_jobs(session, status, site, None, None, sort, limit, offset,
                               state.bigmon_url)
    return page(request, "pandajobs.html", data, "PanDA jobs")


@router.get("/pandajobs/{panda_id}")
def panda_job(request: Request, panda_id: PandaIdPath, session: Session = Db,
              state: MonitorState = State) -> Any:
    data = workload.panda_job_detail(session, panda_id, state.bigmon_url)
    if data is None:
        return missing(request, f"PanDA job {panda_id} is not in the store",
                       "find it from its task's page")
    return page(request, "pandajob.html", data, f"PanDA job {panda_id}")


@router.get("/templates")
def templates(request: Request, session: Session = Db, state: MonitorState = State) -> Any:
    data = {"templates": workload.templates(session, state.library),
            "campaigns": workload.campaigns(session)[:20],
            "submissions": workload.submissions(session, limit=20)}
    return page(request, "templates.html", data, "Templates")


@router.get("/templates/{name}")
def template(request: Request, name: Name, session: Session = Db,
             state: MonitorState = State) -> Any:
    data = workload.template_detail(session, state.library, name)
    if data is None:
        return missing(request, f"no template named {name!r}", "see the list of templates")
    return page(request, "template.html", data, name)


@router.get("/submissions")
def submissions(request: Request, session: Session = Db, template: Filter = None,
                campaign: Filter = None, user: Filter = None, status: Filter = None,
                target: Filter = None, sort: Sort = None, limit: Limit = 50,
                offset: Offset = 0) -> Any:
    data = workload.submissions(session, template, campaign, user, status, target, sort, limit,
                                offset)
    return page(request, "submissions.html", data, "Submissions")


@router.get("/submissions/{submission_id}")
def submission(request: Request, submission_id: SubmissionPath, session: Session = Db,
               state: MonitorState = State) -> Any:
    data = workload.submission_detail(session, submission_id, state.bigmon_url)
    if data is None:
        return missing(request, f"submission {submission_id} does not exist",
                       "see the list of submissions")
    return page(request, "submission.html", data, f"Submission {submission_id}",
                plots={"steps": _step_bars(data["steps"])})


@router.get("/campaigns")
def campaigns(request: Request, session: Session = Db) -> Any:
    return page(request, "campaigns.html", {"campaigns": workload.campaigns(session)},
                "Campaigns")


@router.get("/campaigns/{name}")
def campaign(request: Request, name: Name, session: Session = Db,
             state: MonitorState = State) -> Any:
    data = workload.campaign_detail(session, name, bigmon_url=state.bigmon_url)
    if data is None:
        return missing(request, f"campaign {name!r} has no submissions or tasks",
                       "see the list of campaigns")
    return page(request, "campaign.html", data, f"Campaign {name}",
                plots={"steps": _step_bars(data["steps"])})


def _step_bars(steps: list[dict[str, Any]]) -> Any:
    return plots.hbars("step-progress", [
        (s["step"], round((s["progress"] or 0) * 100, 1), None) for s in steps], unit=" %")


@router.get("/fastpath")
def fastpath_latest(request: Request, session: Session = Db) -> Any:
    runs = fastpath_view.fastpath_runs(session, 1)
    if not runs:
        return page(request, "fastpath.html", {"run_number": None, "runs": []}, "Fast path")
    suffix = "?json" if "json" in request.query_params else ""
    return RedirectResponse(f"/fastpath/{runs[0]}{suffix}", status_code=307)


@router.get("/fastpath/{number}")
def fastpath(request: Request, number: RunPath, session: Session = Db) -> Any:
    data = fastpath_view.fastpath(session, number) | {
        "runs": fastpath_view.fastpath_runs(session)}
    latency = data["latency_series"]
    pool = data["pool_series"]
    charts = {
        "latency": plots.line_chart("slice-latency", [
            plots.Series("slice latency", [(p["at"], p["latency_s"]) for p in latency]),
            plots.Series("express", [(p["at"], p["latency_s"]) for p in latency
                                     if p["express"]])], y_unit=" s",
            label="slice latency (s) over time"),
        "pool": plots.line_chart("pool-size", [
            plots.Series("workers", [(p["at"], p["workers"]) for p in pool
                                     if p["workers"] is not None]),
            plots.Series("autoscaler target", [(p["at"], p["target"]) for p in pool
                                               if p["target"] is not None])],
            step=True, label="standing pool size over time"),
        "histograms": {h["name"]: plots.histogram(
            f"hist-{h['name']}", h["counts"], h["low"], h["high"], label=h["title"],
            underflow=h["underflow"], overflow=h["overflow"]) for h in data["histograms"]},
    }
    return page(request, "fastpath.html", data, f"Fast path · run {number}", plots=charts)


@router.get("/brokerage")
def brokerage(request: Request, session: Session = Db, state: MonitorState = State,
              site: Filter = None, outcome: Filter = None, activity: Filter = None,
              user: Filter = None, workflow: Filter = None, hours: Hours = 24,
              limit: Limit = 50, offset: Offset = 0) -> Any:
    data = {"decisions": fabric.decisions(session, site, outcome, activity, user, workflow,
                                          None, hours, None, limit, offset),
            "sites": fabric.fabric_sites(session, state.catalogue, hours), "hours": hours}
    charts = {"assigned": plots.hbars("assigned-by-site", [
        (s["name"], s["assigned"], f"/fabric/{s['name']}") for s in sorted(
            data["sites"], key=lambda s: -s["assigned"]) if s["assigned"]], unit=" jobs")}
    return page(request, "brokerage.html", data, "Brokerage", plots=charts)


@router.get("/fabric/{name}")
def fabric_site(request: Request, name: Name, session: Session = Db,
                state: MonitorState = State, hours: Hours = 24) -> Any:
    sites = [s for s in state.catalogue if s.name == name]
    if not sites:
        return missing(request, f"site {name} is not in the catalogue",
                       "see the sites on the brokerage page")
    site = sites[0]
    data = {"site": fabric.fabric_sites(session, sites, hours)[0],
            "queues": [q.model_dump(mode="json") for q in site.queues],
            "decisions": fabric.decisions(session, site=name, hours=hours, limit=25),
            "streaming": name in {s.name for s in state.config.sites}, "hours": hours}
    shares = data["site"]
    charts = {"shares": plots.hbars("shares", [
        (f"{c} target", v * 100, None) for c, v in shares["shares"].items()] + [
        (f"{c} used", v * 100, None) for c, v in shares["used_share"].items()], unit=" %")}
    return page(request, "fabric_site.html", data, name, plots=charts)


@router.get("/resources")
def resources(request: Request, session: Session = Db, by: GroupBy = "site",
              hours: Period = 24 * 7) -> Any:
    data = fabric.resources(session, by, hours)
    link = {"site": "/fabric/{}", "user": "/users/{}", "workflow": "/templates/{}"}.get(by)
    charts = {
        "totals": plots.hbars("usage-by-group", [
            (str(r[by]) or "(none)", r["core_hours"],
             link.format(r[by]) if link and r[by] else None) for r in data["rows"][:15]],
            unit=" core-h"),
        "series": plots.line_chart("usage-over-time", [
            plots.Series(str(group) or "(none)", points)
            for group, points in data["series"].items()],
            y_unit="", label=f"core-hours per {data['bin_s'] // 3600} h by {by}"),
    }
    return page(request, "resources.html", data, "Resource usage", plots=charts)
