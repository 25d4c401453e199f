"""REST resources of the workload and the fabric: PanDA tasks and jobs, templates, submissions,
campaigns, the fast path, brokerage decisions, catalogue sites and resource usage; and the
writes on tasks, submissions and campaigns (kill, retry, priority)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.orm import Session

from epic_wfms.monitor import fabric, fastpath_view, workload
from epic_wfms.monitor.api.control import Priority, Reason
from epic_wfms.monitor.api.errors import ERROR_RESPONSES
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
from epic_wfms.monitor.api.reads import found
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.state import MonitorState, caller, monitor_state, read_session

router = APIRouter(responses=ERROR_RESPONSES)
Db = Depends(read_session)
State = Depends(monitor_state)
Caller = Depends(caller)
INT64 = 2**63 - 1
TaskPath = Annotated[int, Path(ge=0, le=INT64, description="PanDA's jediTaskID")]
PandaIdPath = Annotated[int, Path(ge=0, le=INT64, description="PanDA's PandaID")]
SubmissionPath = Annotated[int, Path(ge=0, le=2**31 - 1)]
TaskQuery = Annotated[int | None, Query(ge=0, le=INT64, alias="task")]
SubmissionQuery = Annotated[int | None, Query(ge=0, le=2**31 - 1, alias="submission")]
GroupBy = Annotated[Literal["workflow", "user", "site", "activity", "queue"],
                    Query(description="what to group resource usage by")]
Period = Annotated[int, Query(ge=1, le=24 * 366, description="the period: the last N hours")]


# -- PanDA tasks and jobs -----------------------------------------------------------------------
@router.get("/tasks", tags=["tasks"], summary="PanDA (JEDI) tasks with their jobs by status")
def tasks(session: Session = Db, state: MonitorState = State, status: Filter = None,
          kind: Filter = None, run: RunNumber = None, site: Filter = None, user: Filter = None,
          campaign: Filter = None, submission: SubmissionQuery = None, sort: Sort = None,
          limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    return workload.tasks(session, status, kind, run, site, user, campaign, submission, sort,
                          limit, offset, state.bigmon_url)


@router.get("/tasks/{task_id}", tags=["tasks"], summary="One task: jobs, errors, commands")
def task(task_id: TaskPath, session: Session = Db, state: MonitorState = State,
         job_status: Filter = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return found(workload.task_detail(session, task_id, job_status, limit, offset,
                                      state.bigmon_url),
                 f"task {task_id} is not in the store", "list tasks with GET /api/v1/tasks")


@router.get("/pandajobs", tags=["tasks"], summary="PanDA jobs (PandaID, status, attempt, site)")
def panda_jobs(session: Session = Db, state: MonitorState = State, status: Filter = None,
               site: Filter = None, task: TaskQuery = None, stf: Filter = None,
               sort: Sort = None, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    return workload.panda_jobs(session, status, site, task, stf, sort, limit, offset,
                               state.bigmon_url)


@router.get("/pandajobs/{panda_id}", tags=["tasks"], summary="One PanDA job and its task")
def panda_job(panda_id: PandaIdPath, session: Session = Db,
              state: MonitorState = State) -> dict[str, Any]:
    return found(workload.panda_job_detail(session, panda_id, state.bigmon_url),
                 f"PanDA job {panda_id} is not in the store",
                 "list a task's jobs with GET /api/v1/tasks/{id}")


# -- templates, submissions, campaigns --------------------------------------------------------
@router.get("/templates", tags=["templates"], summary="Workflow templates and their use")
def templates(session: Session = Db, state: MonitorState = State) -> list[dict[str, Any]]:
    return workload.templates(session, state.library)


@router.get("/templates/{name}", tags=["templates"], summary="One template and its submissions")
def template(name: Name, session: Session = Db, state: MonitorState = State) -> dict[str, Any]:
    return found(workload.template_detail(session, state.library, name),
                 f"no template named {name!r}", "list templates with GET /api/v1/templates")


@router.get("/submissions", tags=["templates"], summary="Template submissions")
def submissions(session: Session = Db, template: Filter = None, campaign: Filter = None,
                user: Filter = None, status: Filter = None, target: Filter = None,
                sort: Sort = None, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    return workload.submissions(session, template, campaign, user, status, target, sort, limit,
                                offset)


@router.get("/submissions/{submission_id}", tags=["templates"],
            summary="One submission: progress by step, failures, retries, tasks")
def submission(submission_id: SubmissionPath, session: Session = Db,
               state: MonitorState = State) -> dict[str, Any]:
    return found(workload.submission_detail(session, submission_id, state.bigmon_url),
                 f"submission {submission_id} does not exist",
                 "list submissions with GET /api/v1/submissions")


@router.get("/campaigns", tags=["templates"], summary="Campaigns: submissions and tasks")
def campaigns(session: Session = Db) -> list[dict[str, Any]]:
    return workload.campaigns(session)


@router.get("/campaigns/{name}", tags=["templates"],
            summary="One campaign: progress by step and tag, failures, retries, tasks")
def campaign(name: Name, session: Session = Db, state: MonitorState = State) -> dict[str, Any]:
    return found(workload.campaign_detail(session, name, bigmon_url=state.bigmon_url),
                 f"campaign {name!r} has no submissions or tasks",
                 "list campaigns with GET /api/v1/campaigns")


# -- fast path, brokerage, sites, resources ---------------------------------------------------
@router.get("/fastpath/runs", tags=["fast path"], summary="Runs with fast-path results")
def fastpath_runs(session: Session = Db) -> list[int]:
    return fastpath_view.fastpath_runs(session)


@router.get("/fastpath/slices", tags=["fast path"], summary="TF slices and their results")
def fastpath_slices(session: Session = Db, run: RunNumber = None, status: Filter = None,
                    stf: Filter = None, sort: Sort = None, limit: Limit = 100,
                    offset: Offset = 0) -> dict[str, Any]:
    return fastpath_view.slices(session, run, status, stf, sort, limit, offset)


@router.get("/fastpath/{number}", tags=["fast path"],
            summary="A run's fast path: slices, latency, pool size, histograms, alarms")
def fastpath(number: RunPath, session: Session = Db) -> dict[str, Any]:
    return fastpath_view.fastpath(session, number)


@router.get("/brokerage/decisions", tags=["brokerage"],
            summary="Brokerage decisions with their reasons, newest first")
def decisions(session: Session = Db, site: Filter = None, outcome: Filter = None,
              activity: Filter = None, user: Filter = None, workflow: Filter = None,
              job: Annotated[str | None, Query(max_length=255)] = None, hours: Hours = 24,
              sort: Sort = None, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    return fabric.decisions(session, site, outcome, activity, user, workflow, job, hours, sort,
                            limit, offset)


@router.get("/fabric/sites", tags=["sites"],
            summary="Catalogue sites: health, shares, decisions, core-hours")
def fabric_sites(session: Session = Db, state: MonitorState = State,
                 hours: Hours = 24) -> list[dict[str, Any]]:
    return fabric.fabric_sites(session, state.catalogue, hours)


@router.get("/resources", tags=["sites"],
            summary="Resource usage by workflow, user, site, activity or queue over a period")
def resources(session: Session = Db, by: GroupBy = "site", hours: Period = 24 * 7
              ) -> dict[str, Any]:
    return fabric.resources(session, by, hours)


# -- writes -------------------------------------------------------------------------------------
@router.post("/tasks/{task_id}/kill", tags=["control"], summary="Kill a PanDA task")
def kill_task(task_id: TaskPath, body: Reason, who: Principal = Caller,
              state: MonitorState = State) -> dict[str, Any]:
    return state.work.kill_task(who, task_id, body.reason)


@router.post("/tasks/{task_id}/retry", tags=["control"], summary="Retry a PanDA task")
def retry_task(task_id: TaskPath, who: Principal = Caller,
               state: MonitorState = State) -> dict[str, Any]:
    return state.work.retry_task(who, task_id)


@router.put("/tasks/{task_id}/priority", tags=["control"], summary="Reprioritise a task")
def task_priority(task_id: TaskPath, body: Priority, who: Principal = Caller,
                  state: MonitorState = State) -> dict[str, Any]:
    return state.work.set_task_priority(who, task_id, body.priority)


@router.post("/submissions/{submission_id}/kill", tags=["control"],
             summary="Kill a submission (its PanDA tasks, or its local runner)")
def kill_submission(submission_id: SubmissionPath, body: Reason, who: Principal = Caller,
                    state: MonitorState = State) -> dict[str, Any]:
    return state.work.kill_submission(who, submission_id, body.reason)


@router.post("/submissions/{submission_id}/retry", tags=["control"],
             summary="Retry a submission's failed PanDA tasks")
def retry_submission(submission_id: SubmissionPath, who: Principal = Caller,
                     state: MonitorState = State) -> dict[str, Any]:
    return state.work.retry_submission(who, submission_id)


@router.put("/submissions/{submission_id}/priority", tags=["control"],
            summary="Reprioritise a submission and its tasks")
def submission_priority(submission_id: SubmissionPath, body: Priority, who: Principal = Caller,
                        state: MonitorState = State) -> dict[str, Any]:
    return state.work.set_submission_priority(who, submission_id, body.priority)


@router.put("/campaigns/{name}/priority", tags=["control"],
            summary="Reprioritise a campaign (its submissions and tasks)")
def campaign_priority(name: Name, body: Priority, who: Principal = Caller,
                      state: MonitorState = State) -> dict[str, Any]:
    return state.work.set_campaign_priority(who, name, body.priority)
