"""Write endpoints (each needs an authorized role) and the operator command log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.monitor import queries as q
from epic_wfms.monitor.api.errors import ERROR_RESPONSES
from epic_wfms.monitor.api.params import TEXT, JobPath, Limit, Offset
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.state import (
    MonitorState,
    caller,
    monitor_state,
    requires,
    sensitive_session,
)
from epic_wfms.store.schema import OperatorCommandRecord

router = APIRouter(responses=ERROR_RESPONSES)
STREAMING = Depends(requires("streaming.control"))
JOBS = Depends(requires("job.control"))
PRIORITY = Depends(requires("priority"))


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=500, pattern=TEXT,
                        description="why (kept in the log)")


class Revocation(Reason):
    jti: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT,
                            description="one token (its jti claim); admins only")
    issuer: str | None = Field(default=None, min_length=1, max_length=500, pattern=TEXT,
                               description="with subject: that identity's tokens (admins)")
    subject: str | None = Field(default=None, min_length=1, max_length=255, pattern=TEXT,
                                description="a subject at issuer (default: the caller's)")

    @model_validator(mode="after")
    def _one_target(self) -> Revocation:
        if self.jti is not None and (self.subject or self.issuer):
            raise ValueError("give jti, or subject (and issuer), not both")
        if self.issuer is not None and self.subject is None:
            raise ValueError("issuer needs subject")
        return self


class Priority(BaseModel):
    priority: int = Field(ge=-1000, le=10000, description="PanDA-style: higher runs first")


@router.get("/streaming/hold", tags=["control"], summary="The operator's hold, if any")
def hold(session: Session = Depends(sensitive_session)) -> dict[str, Any]:
    return {"suspended": (held := q.processing_hold(session)) is not None, "command": held}


@router.post("/streaming/suspend", tags=["control"], summary="Suspend processing (operator)")
def suspend(body: Reason, who: Principal = STREAMING,
            state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return state.ops.suspend(who, body.reason)


@router.post("/streaming/resume", tags=["control"], summary="Resume processing (operator)")
def resume(body: Reason, who: Principal = STREAMING,
           state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return state.ops.resume(who, body.reason)


@router.post("/jobs/{job_id}/kill", tags=["control"], summary="Kill an active job")
def kill(job_id: JobPath, body: Reason, who: Principal = JOBS,
         state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return state.ops.kill_job(who, job_id, body.reason)


@router.post("/jobs/{job_id}/retry", tags=["control"], summary="Retry a failed reco job")
def retry(job_id: JobPath, who: Principal = JOBS,
          state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return state.ops.retry_job(who, job_id)


@router.put("/jobs/{job_id}/priority", tags=["control"], summary="Change a job's priority")
def priority(job_id: JobPath, body: Priority, who: Principal = PRIORITY,
             state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    return state.ops.set_priority(who, job_id, body.priority)


@router.get("/commands", tags=["control"], summary="Operator command log, newest first")
def commands(session: Session = Depends(sensitive_session), limit: Limit = 100,
             offset: Offset = 0) -> dict[str, Any]:
    return q.paged(session, select(OperatorCommandRecord), OperatorCommandRecord, "-id",
                   {"id"}, "-id", limit, offset)


@router.post("/tokens/revoke", tags=["control"],
             summary="Revoke a token (jti) or an identity's tokens; without either: your own")
def revoke(body: Revocation, who: Principal = Depends(caller),
           state: MonitorState = Depends(monitor_state)) -> dict[str, Any]:
    command = state.ops.revoke_tokens(who, body.reason, body.jti, body.issuer, body.subject)
    state.auth.revocations_changed()
    return command
