"""The pages. Each gathers its data with monitor.queries and renders it (or returns ``?json``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from epic_wfms.model.detector import DetectorState, Readiness
from epic_wfms.monitor import plots, trends, workload
from epic_wfms.monitor import queries as q
from epic_wfms.monitor.api.params import (
    Filter,
    Hours,
    JobPath,
    Limit,
    Name,
    Offset,
    RunNumber,
    RunPath,
    Sort,
)
from epic_wfms.monitor.pages.render import page
from epic_wfms.monitor.state import MonitorState, monitor_state, read_session
from epic_wfms.statemachine.table import ALLOWED_READINESS, transitions_from

router = APIRouter(include_in_schema=False)
Db = Depends(read_session)
State = Depends(monitor_state)

STATE_LANES = ("off", "no_beam", "beam", "run", "calib", "test")


def missing(request: Request, what: str, fix: str) -> Any:
    return page(request, "error.html", {"error": {"status": 404, "what": what, "fix": fix}},
                "Not found", 404)


@router.get("/")
def dashboard(request: Request, session: Session = Db, state: MonitorState = State) -> Any:
    data = q.dashboard(session)
    data["sites"] = q.sites(session, state.configured_sites(), 1)
    run = data["run"]
    data["latency_series"] = trends.latency_series(session, run["number"]) if run else []
    data["backlog_series"] = trends.backlog_series(
        data["throughput"], sum(sum(v.values()) for v in data["backlog"].values()))
    return page(request, "dashboard.html", data, "Streaming dashboard", plots={
        "latency": plots.line_chart("stf-latency", [
            plots.Series("end to end", [(p["at"], p["end_to_end_s"])
                                        for p in data["latency_series"]]),
            plots.Series("processing", [(p["at"], p["process_s"])
                                        for p in data["latency_series"] if p["process_s"]])],
            y_unit=" s", label="STF latency over the run"),
        "backlog": plots.line_chart("backlog", [plots.Series("STFs waiting or in flight", [
            (at, n) for at, n in data["backlog_series"]], color="#f59e0b")],
            label="backlog over time")})


@router.get("/state")
def state_machine(request: Request, session: Session = Db, limit: Limit = 100,
                  offset: Offset = 0, run: RunNumber = None) -> Any:
    current = q.detector_state(session)
    nodes = [{"state": s.value, "substate": r.value,
              "current": (s.value, r.value) == (current["state"], current["substate"])}
             for s in DetectorState for r in Readiness if r in ALLOWED_READINESS[s]]
    nxt = transitions_from(DetectorState(current["state"]), Readiness(current["substate"]))
    data = {"current": current, "nodes": nodes, "lanes": STATE_LANES,
            "next": [{"trigger": t.trigger.value, "to": _target(t, current["substate"]),
                      "guard": t.guard.value, "description": t.description} for t in nxt],
            "history": q.transitions(session, limit, offset, run)}
    return page(request, "statemachine.html", data, "State machine")


def _target(transition: Any, substate: str) -> str:
    state = (transition.target or transition.source).value
    readiness = transition.target_readiness
    return f"{state}/{readiness.value if readiness else substate}"


@router.get("/runs")
def runs(request: Request, session: Session = Db, status: Filter = None, run_type: Filter = None,
         sort: Sort = None, limit: Limit = 50, offset: Offset = 0) -> Any:
    data = q.runs(session, status, run_type, sort, limit, offset)
    return page(request, "runs.html", data, "Runs")


@router.get("/runs/{number}")
def run(request: Request, number: RunPath, session: Session = Db,
        processing_status: Filter = None, sort: Sort = None, limit: Limit = 50,
        offset: Offset = 0) -> Any:
    data = q.run_detail(session, number)
    if data is None:
        return missing(request, f"run {number} does not exist", "see the list of runs")
    data["stfs"] = q.stfs(session, number, processing_status, None, None, sort or "-sequence",
                          limit, offset)
    return page(request, "run.html", data, f"Run {number}")


@router.get("/stfs")
def stfs(request: Request, session: Session = Db, run: RunNumber = None,
         processing_status: Filter = None, archive_status: Filter = None, site: Filter = None,
         sort: Sort = None, limit: Limit = 50, offset: Offset = 0) -> Any:
    data = q.stfs(session, run, processing_status, archive_status, site, sort, limit, offset)
    return page(request, "stfs.html", data, "STFs")


@router.get("/stfs/{filename}")
def stf(request: Request, filename: Name, session: Session = Db) -> Any:
    data = q.stf_detail(session, filename)
    if data is None:
        return missing(request, f"STF {filename} does not exist", "find it from its run's page")
    return page(request, "stf.html", data, filename)


@router.get("/jobs")
def jobs(request: Request, session: Session = Db, status: Filter = None, site: Filter = None,
         kind: Filter = None, run: RunNumber = None, stf: Filter = None, sort: Sort = None,
         limit: Limit = 50, offset: Offset = 0) -> Any:
    data = q.jobs(session, status, site, kind, run, stf, sort, limit, offset)
    return page(request, "jobs.html", data, "Jobs")


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: JobPath, session: Session = Db) -> Any:
    data = q.job_detail(session, job_id)
    if data is None:
        return missing(request, f"job {job_id} does not exist", "see the list of jobs")
    return page(request, "job.html", data, f"Job {job_id}")


@router.get("/files/{name}")
def file(request: Request, name: Name, session: Session = Db) -> Any:
    return page(request, "file.html", q.provenance(session, name), name)


@router.get("/sites")
def sites(request: Request, session: Session = Db, hours: Hours = 24,
          state: MonitorState = State) -> Any:
    data = {"sites": q.sites(session, state.configured_sites(), hours), "hours": hours}
    return page(request, "sites.html", data, "Sites")


@router.get("/sites/{name}")
def site(request: Request, name: Name, session: Session = Db, hours: Hours = 24,
         state: MonitorState = State) -> Any:
    configured = [s for s in state.configured_sites() if s["name"] == name]
    if not configured:
        return missing(request, f"site {name} is not configured", "see the list of sites")
    data = {"site": q.sites(session, configured, hours)[0],
            "jobs": q.jobs(session, site=name, limit=50),
            "backlog": q.backlog(session).get(name, {})}
    return page(request, "site.html", data, name)


@router.get("/issues")
def issues(request: Request, session: Session = Db, open_only: bool = True,
           run: RunNumber = None, kind: Filter = None, limit: Limit = 100,
           offset: Offset = 0) -> Any:
    data = q.issues(session, open_only, run, kind, limit, offset)
    return page(request, "issues.html", data, "Integrity issues")


@router.get("/users")
def users(request: Request, session: Session = Db) -> Any:
    data = {"usage": q.usage(session)}
    return page(request, "users.html", data, "Users")


@router.get("/users/{username}")
def user(request: Request, username: Name, session: Session = Db,
         state: MonitorState = State) -> Any:
    data = q.user_dashboard(session, username) | workload.user_work(
        session, username, bigmon_url=state.bigmon_url)
    return page(request, "user.html", data, username)
