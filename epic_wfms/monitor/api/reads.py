"""Read endpoints: runs, STFs, state machine, jobs, merges, provenance, issues, agents, sites,
users, summaries. Filters are query parameters; lists are paged and sortable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from epic_wfms.monitor import queries as q
from epic_wfms.monitor import workload
from epic_wfms.monitor.api.errors import ERROR_RESPONSES, NotFound
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
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.state import MonitorState, monitor_state, read_session, reader

router = APIRouter(responses=ERROR_RESPONSES)
Db = Depends(read_session)


def found(value: Any, what: str, fix: str) -> Any:
    if value is None:
        raise NotFound(what, fix)
    return value


@router.get("/dashboard", tags=["streaming"], summary="Current run, pipeline, backlog, activity")
def dashboard(session: Session = Db) -> dict[str, Any]:
    return q.dashboard(session)


@router.get("/state", tags=["state machine"], summary="Current detector/DAQ state")
def state(session: Session = Db) -> dict[str, Any]:
    return q.detector_state(session)


@router.get("/state/history", tags=["state machine"], summary="Transitions, newest first")
def state_history(session: Session = Db, run: RunNumber = None, limit: Limit = 50,
                  offset: Offset = 0) -> dict[str, Any]:
    return q.transitions(session, limit, offset, run)


@router.get("/runs", tags=["runs"], summary="Runs (filter by status, run_type)")
def runs(session: Session = Db, status: Filter = None, run_type: Filter = None,
         sort: Sort = None, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    return q.runs(session, status, run_type, sort, limit, offset)


@router.get("/runs/{number}", tags=["runs"], summary="One run: counts, latency, merges, jobs")
def run(number: RunPath, session: Session = Db) -> dict[str, Any]:
    return found(q.run_detail(session, number), f"run {number} does not exist",
                 "list runs with GET /api/v1/runs")


@router.get("/stfs", tags=["stfs"], summary="STFs with their timelines")
def stfs(session: Session = Db, run: RunNumber = None, processing_status: Filter = None,
         archive_status: Filter = None, site: Filter = None, sort: Sort = None,
         limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return q.stfs(session, run, processing_status, archive_status, site, sort, limit, offset)


@router.get("/stfs/{filename}", tags=["stfs"], summary="One STF: timeline, jobs, provenance")
def stf(filename: Name, session: Session = Db) -> dict[str, Any]:
    return found(q.stf_detail(session, filename), f"STF {filename} does not exist",
                 "list a run's STFs with GET /api/v1/stfs?run=N")


@router.get("/jobs", tags=["jobs"], summary="Jobs (filter by status, site, kind, run, stf)")
def jobs(session: Session = Db, status: Filter = None, site: Filter = None, kind: Filter = None,
         run: RunNumber = None, stf: Filter = None, sort: Sort = None, limit: Limit = 100,
         offset: Offset = 0) -> dict[str, Any]:
    return q.jobs(session, status, site, kind, run, stf, sort, limit, offset)


@router.get("/jobs/{job_id}", tags=["jobs"], summary="One job with inputs, outputs, commands")
def job(job_id: JobPath, session: Session = Db) -> dict[str, Any]:
    return found(q.job_detail(session, job_id), f"job {job_id} does not exist",
                 "list jobs with GET /api/v1/jobs")


@router.get("/merges", tags=["jobs"], summary="Merges (filter by run, status)")
def merges(session: Session = Db, run: RunNumber = None, status: Filter = None,
           limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return q.merges(session, run, status, limit, offset)


@router.get("/files/{name}/provenance", tags=["files"], summary="Parents, children, replicas")
def provenance(name: Name, session: Session = Db) -> dict[str, Any]:
    return q.provenance(session, name)


@router.get("/issues", tags=["operations"], summary="Integrity issues (open by default)")
def issues(session: Session = Db, open_only: bool = True, run: RunNumber = None,
           kind: Filter = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return q.issues(session, open_only, run, kind, limit, offset)


@router.get("/agents", tags=["operations"], summary="Agents and their heartbeats")
def agents(session: Session = Db) -> list[dict[str, Any]]:
    return q.agents(session)


@router.get("/sites", tags=["sites"], summary="Sites: slots, backlog, recent jobs, failures")
def sites(session: Session = Db, hours: Hours = 24,
          state: MonitorState = Depends(monitor_state)) -> list[dict[str, Any]]:
    return q.sites(session, state.configured_sites(), hours)


@router.get("/sites/{name}", tags=["sites"], summary="One site")
def site(name: Name, session: Session = Db, hours: Hours = 24,
         state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    configured = [s for s in state.configured_sites() if s["name"] == name]
    found(configured or None, f"site {name} is not configured", "list sites: GET /api/v1/sites")
    return q.sites(session, configured, hours)[0]


@router.get("/users/me", tags=["users"], summary="Who am I: name and roles")
def me(principal: Principal = Depends(reader)) -> dict[str, Any]:
    return {"user": principal.username, "roles": sorted(principal.roles),
            "authenticated": principal.authenticated}


@router.get("/users/{username}", tags=["users"],
            summary="A user's tasks, submissions, resource usage, commands, failures")
def user(username: Name, session: Session = Db,
         state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return q.user_dashboard(session, username) | workload.user_work(
        session, username, bigmon_url=state.bigmon_url)


@router.get("/usage", tags=["users"], summary="REST usage per user and endpoint (R10.8)")
def usage(session: Session = Db, user: Filter = None) -> list[dict[str, Any]]:
    return q.usage(session, user)


@router.get("/summary", tags=["streaming"], summary="Aggregates over a recent window")
def summary(session: Session = Db, hours: Hours = 24) -> dict[str, Any]:
    return q.summary(session, hours)
