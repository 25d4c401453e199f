"""The monitor over MCP (Model Context Protocol), for AI assistants: ``epic-wfms mcp``.

Read tools (runs, STFs, jobs, PanDA tasks, submissions, campaigns, issues, state history,
sites, brokerage, fast-path results, resource usage) call the same read model as the REST
API and the pages (``monitor.queries``, ``workload``, ``fabric``, ``fastpath_view``) on the
same read-only sessions; control tools call the same writes (``monitor.writes``,
``monitor.work_control``) after the same role checks (``monitor.auth``). The caller is the
bearer token of the HTTP request (streamable HTTP) or, over stdio, the token given when the
server was started; without one the caller is anonymous: reads as the REST API allows them,
no control.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from sqlalchemy.orm import Session

from epic_wfms.errors import EpicWfmsError
from epic_wfms.monitor import fabric, fastpath_view, workload
from epic_wfms.monitor import queries as q
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.state import MonitorState

Limit = Annotated[int, Field(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Field(ge=0, le=2**31 - 1, description="rows to skip")]
Id = Annotated[int, Field(ge=0, le=2**63 - 1)]
Text = Annotated[str, Field(min_length=1, max_length=255)]
Reason = Annotated[str, Field(min_length=1, max_length=500, description="kept in the log")]
PriorityValue = Annotated[int, Field(ge=-1000, le=10000, description="higher runs first")]
Hours = Annotated[int, Field(ge=1, le=24 * 366)]
INSTRUCTIONS = (
    "ePIC streaming workflow management (epic-wfms). Read tools return the same JSON as the "
    "REST API /api/v1 and the monitor pages. Ids: run numbers, STF file names "
    "(swf.RUN.SEQ.stf), job ids, PanDA jediTaskID/PandaID, submission ids. Control tools need "
    "a bearer token whose role permits them (operator, production_manager, admin).")


class McpMonitor:
    """The tools, bound to one monitor state (store, authenticator, writes)."""

    def __init__(self, state: MonitorState, token: str | None = None) -> None:
        self.state, self.token = state, token

    def caller(self, ctx: Context | None) -> Principal:
        headers = (ctx.headers if ctx is not None else None) or {}
        header = headers.get("authorization")
        if header is None and self.token:
            header = f"Bearer {self.token}"
        return self.state.auth.principal(header)

    def read(self, ctx: Context | None, query: Callable[[Session], Any], what: str = "") -> Any:
        try:
            self.state.auth.require(self.caller(ctx), "read")
            with self.state.reads.session() as session:
                value = query(session)
        except EpicWfmsError as error:
            raise ToolError(_text(error)) from error
        except ValueError as error:
            raise ToolError(f"bad parameter: {error}") from error
        if value is None:
            raise ToolError(f"{what} does not exist")
        return value

    def write(self, ctx: Context | None, permission: str | None,
              action: Callable[[Principal], Any]) -> Any:
        """``permission`` None: the action checks who may itself (owners of tasks)."""
        try:
            who = self.caller(ctx)
            if permission is not None:
                self.state.auth.require(who, permission)
            return action(who)
        except EpicWfmsError as error:
            raise ToolError(_text(error)) from error


def _text(error: EpicWfmsError) -> str:
    """what, why and how to fix, as the REST API's error object says them."""
    parts = [error.what, error.why and f"why: {error.why}", error.fix and f"fix: {error.fix}"]
    status = getattr(error, "status", None)
    code = getattr(error, "code", None)
    head = f"[{status} {code}] " if status and code else ""
    return head + "; ".join(p for p in parts if p)


def build_mcp(state: MonitorState, token: str | None = None) -> MCPServer:
    m = McpMonitor(state, token)
    server = MCPServer("epic-wfms", instructions=INSTRUCTIONS, version="1.0.0")
    bigmon = state.bigmon_url
    tool = server.tool

    # -- reads ------------------------------------------------------------------------------
    @tool(description="Who am I: the caller's name and roles (from the bearer token)")
    def whoami(ctx: Context) -> dict[str, Any]:
        who = m.write(ctx, None, lambda p: p)
        return {"user": who.username, "roles": sorted(who.roles),
                "authenticated": who.authenticated}

    @tool(description="Streaming dashboard: detector state, current run with STF pipeline "
                      "counts and latency, backlog per site, throughput, gate, issues, agents")
    def dashboard(ctx: Context) -> dict[str, Any]:
        return m.read(ctx, q.dashboard)

    @tool(description="Current detector/DAQ state (state, substate, flavour, since, run)")
    def detector_state(ctx: Context) -> dict[str, Any]:
        return m.read(ctx, q.detector_state)

    @tool(description="State-machine transitions, newest first (optionally of one run)")
    def state_history(ctx: Context, run: Id | None = None, limit: Limit = 50,
                      offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.transitions(s, limit, offset, run))

    @tool(description="Runs, newest first (filter by status: announced, open, closed, finished)")
    def list_runs(ctx: Context, status: Text | None = None, limit: Limit = 50,
                  offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.runs(s, status, None, None, limit, offset))

    @tool(description="One run: STF counts per pipeline stage, stage latency, jobs, merges, "
                      "issues, processing-gate events")
    def get_run(ctx: Context, number: Id) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.run_detail(s, number), f"run {number}")

    @tool(description="STFs with their timelines (filter by run, processing status, site)")
    def list_stfs(ctx: Context, run: Id | None = None, processing_status: Text | None = None,
                  site: Text | None = None, limit: Limit = 100,
                  offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.stfs(s, run, processing_status, None, site, None, limit,
                                            offset))

    @tool(description="One STF by file name: timeline, jobs, provenance, replicas")
    def get_stf(ctx: Context, filename: Text) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.stf_detail(s, filename), f"STF {filename}")

    @tool(description="Streaming jobs (reco, merge) with a diagnosis of failures")
    def list_jobs(ctx: Context, status: Text | None = None, site: Text | None = None,
                  kind: Text | None = None, run: Id | None = None, limit: Limit = 100,
                  offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.jobs(s, status, site, kind, run, None, None, limit,
                                            offset))

    @tool(description="One streaming job: details, diagnosis, inputs and outputs, commands")
    def get_job(ctx: Context, job_id: Id) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.job_detail(s, job_id), f"job {job_id}")

    @tool(description="PanDA (JEDI) tasks with jobs by status, progress, attempts, BigMon link")
    def list_tasks(ctx: Context, status: Text | None = None, user: Text | None = None,
                   campaign: Text | None = None, run: Id | None = None, limit: Limit = 50,
                   offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: workload.tasks(s, status, None, run, None, user, campaign,
                                                    None, None, limit, offset, bigmon))

    @tool(description="One PanDA task by jediTaskID: its jobs (PandaID, status, attempt, "
                      "site, STF, error), the most frequent errors, operator commands")
    def get_task(ctx: Context, task_id: Id, job_status: Text | None = None,
                 limit: Limit = 100) -> dict[str, Any]:
        return m.read(ctx, lambda s: workload.task_detail(s, task_id, job_status, limit, 0,
                                                          bigmon), f"task {task_id}")

    @tool(description="Template submissions (filter by template, campaign, user, status)")
    def list_submissions(ctx: Context, template: Text | None = None,
                         campaign: Text | None = None, user: Text | None = None,
                         status: Text | None = None, limit: Limit = 50,
                         offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: workload.submissions(s, template, campaign, user, status,
                                                          None, None, limit, offset))

    @tool(description="One submission: progress by step, failures, retries, tags, its tasks")
    def get_submission(ctx: Context, submission_id: Id) -> dict[str, Any]:
        return m.read(ctx, lambda s: workload.submission_detail(s, submission_id, bigmon),
                      f"submission {submission_id}")

    @tool(description="Campaigns: submissions and PanDA tasks by status, priority")
    def list_campaigns(ctx: Context) -> list[dict[str, Any]]:
        return m.read(ctx, workload.campaigns)

    @tool(description="One campaign: progress by step and production tag, failures, tasks")
    def get_campaign(ctx: Context, name: Text) -> dict[str, Any]:
        return m.read(ctx, lambda s: workload.campaign_detail(s, name, bigmon_url=bigmon),
                      f"campaign {name}")

    @tool(description="Integrity issues (open only by default)")
    def list_issues(ctx: Context, open_only: bool = True, run: Id | None = None,
                    limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: q.issues(s, open_only, run, None, limit, offset))

    @tool(description="E1 streaming sites: slots, backlog, active and recent jobs, failures")
    def list_sites(ctx: Context, hours: Hours = 24) -> list[dict[str, Any]]:
        return m.read(ctx, lambda s: q.sites(s, state.configured_sites(), hours))

    @tool(description="All catalogue sites (E1, E2): health, shares target and used, jobs "
                      "brokerage assigned and core-hours used in the last hours")
    def list_fabric_sites(ctx: Context, hours: Hours = 24) -> list[dict[str, Any]]:
        return m.read(ctx, lambda s: fabric.fabric_sites(s, state.catalogue, hours))

    @tool(description="Brokerage decisions with their reasons, newest first")
    def brokerage_decisions(ctx: Context, site: Text | None = None, outcome: Text | None = None,
                            user: Text | None = None, job: Text | None = None,
                            hours: Hours = 24, limit: Limit = 50) -> dict[str, Any]:
        return m.read(ctx, lambda s: fabric.decisions(s, site, outcome, None, user, None, job,
                                                      hours, None, limit, 0))

    @tool(description="Fast-path results of a run: slices by status, slice latency p50/p99 "
                      "and series, pool size over time, rolling histograms, alarms")
    def fastpath(ctx: Context, run: Id | None = None) -> dict[str, Any]:
        def query(session: Session) -> dict[str, Any] | None:
            number = run if run is not None else next(
                iter(fastpath_view.fastpath_runs(session, 1)), None)
            return None if number is None else fastpath_view.fastpath(session, number)
        return m.read(ctx, query, "fast-path results")

    @tool(description="TF slices (the fast path's per-slice results)")
    def list_slices(ctx: Context, run: Id | None = None, status: Text | None = None,
                    limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        return m.read(ctx, lambda s: fastpath_view.slices(s, run, status, None, None, limit,
                                                          offset))

    @tool(description="Resource usage (core-hours, GPU-hours, jobs) by workflow, user, site, "
                      "activity or queue over the last hours")
    def resource_usage(ctx: Context, by: Literal["workflow", "user", "site", "activity",
                                                 "queue"] = "site",
                       hours: Hours = 24 * 7) -> dict[str, Any]:
        return m.read(ctx, lambda s: fabric.resources(s, by, hours))

    # -- control ----------------------------------------------------------------------------
    ops, work = state.ops, state.work

    @tool(description="Suspend processing (operator, admin): new STFs are deferred")
    def suspend_processing(ctx: Context, reason: Reason) -> dict[str, Any]:
        return m.write(ctx, "streaming.control", lambda who: ops.suspend(who, reason))

    @tool(description="Resume processing (operator, admin): deferred STFs are dispatched")
    def resume_processing(ctx: Context, reason: Reason) -> dict[str, Any]:
        return m.write(ctx, "streaming.control", lambda who: ops.resume(who, reason))

    @tool(description="Kill an active streaming job (production_manager, operator, admin)")
    def kill_job(ctx: Context, job_id: Id, reason: Reason) -> dict[str, Any]:
        return m.write(ctx, "job.control", lambda who: ops.kill_job(who, job_id, reason))

    @tool(description="Retry a failed reco job's STF (production_manager, operator, admin)")
    def retry_job(ctx: Context, job_id: Id) -> dict[str, Any]:
        return m.write(ctx, "job.control", lambda who: ops.retry_job(who, job_id))

    @tool(description="Set an active job's priority (production_manager, admin)")
    def set_job_priority(ctx: Context, job_id: Id, priority: PriorityValue) -> dict[str, Any]:
        return m.write(ctx, "priority", lambda who: ops.set_priority(who, job_id, priority))

    @tool(description="Kill a PanDA task (its owner, production_manager, operator, admin)")
    def kill_task(ctx: Context, task_id: Id, reason: Reason) -> dict[str, Any]:
        return m.write(ctx, None, lambda who: work.kill_task(who, task_id, reason))

    @tool(description="Retry a PanDA task's failed parts (owner, production_manager, "
                      "operator, admin)")
    def retry_task(ctx: Context, task_id: Id) -> dict[str, Any]:
        return m.write(ctx, None, lambda who: work.retry_task(who, task_id))

    @tool(description="Set a PanDA task's priority (owner, production_manager, admin)")
    def set_task_priority(ctx: Context, task_id: Id, priority: PriorityValue) -> dict[str, Any]:
        return m.write(ctx, None, lambda who: work.set_task_priority(who, task_id, priority))

    @tool(description="Kill a template submission (owner, production_manager, operator, admin)")
    def kill_submission(ctx: Context, submission_id: Id, reason: Reason) -> dict[str, Any]:
        return m.write(ctx, None, lambda who: work.kill_submission(who, submission_id, reason))

    return server
