"""Operator writes (R13): suspend/resume processing, kill/retry a job, change priority.

Each write checks its target, takes effect where the streaming agents look (the store, and
work messages on the bus), and is recorded as an OperatorCommandRecord with its result.
Refusals are ``WriteRefused`` with an HTTP status and a what/why/fix message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from epic_wfms.bus import MessageBus, MessageFactory
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.lifecycle.job import JOB, JOB_ACTIVE, JOB_UNSUCCESSFUL, JobKind, JobStatus
from epic_wfms.lifecycle.stf import PROCESSING, STF_BACKLOG, ProcessingStatus
from epic_wfms.monitor import revocation
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.queries import as_dict, detector_state
from epic_wfms.store.controls import processing_held
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    GateEventRecord,
    JobRecord,
    OperatorCommandRecord,
    StfRecord,
    utcnow,
)
from epic_wfms.streaming.gating import gate_action

PRODUCER = "epic-wfms.monitor"


class WriteRefused(EpicWfmsError):
    def __init__(self, status: int, code: str, what: str, why: str = "", fix: str = "") -> None:
        super().__init__(what, why, fix)
        self.status, self.code = status, code


class Operations:
    """The write side of the monitor; ``bus`` is None when no agent can be reached."""

    def __init__(self, config: Config, db: Database, bus: MessageBus | None) -> None:
        self.config, self.db, self.bus = config, db, bus
        self.factory = MessageFactory(PRODUCER)

    def _publish(self, destination: str, msg_type: str, body: m._Payload,
                 run_number: int | None) -> bool:
        if self.bus is None:
            return False
        with self.db.session() as session:
            state = detector_state(session)
        self.bus.publish(destination, self.factory.make(
            msg_type, body, run_number=run_number, state=state["state"],
            substate=state["substate"]))
        return True

    def _record(self, session: Any, who: Principal, action: str, kind: str, target: str,
                result: str, **params: Any) -> dict[str, Any]:
        command = OperatorCommandRecord(
            action=action, target_kind=kind, target_id=target, params=params,
            username=who.username, role=",".join(sorted(who.roles)), result=result)
        session.add(command)
        session.flush()
        return as_dict(command)

    # -- streaming --------------------------------------------------------------------------
    def suspend(self, who: Principal, reason: str) -> dict[str, Any]:
        with self.db.session() as session:
            if processing_held(session):
                raise WriteRefused(409, "already_suspended", "processing is already suspended",
                                   "the latest operator command is a suspend",
                                   "resume it first (POST /api/v1/streaming/resume)")
            backlog = session.scalar(select(func.count(StfRecord.id)).where(
                StfRecord.processing_status.in_(STF_BACKLOG)))
            text = f"operator {who.username}: {reason}"
            session.add(GateEventRecord(action="suspended", reason=text, backlog=backlog))
            command = self._record(session, who, "suspend", "streaming", "processing",
                                   "new STFs are deferred until resumed", reason=reason)
        self._publish(dest.EVENTS, "processing_suspended",
                      m.ProcessingGate(reason=text, backlog=backlog), None)
        return command

    def resume(self, who: Principal, reason: str) -> dict[str, Any]:
        """Lift the hold first (agents check it), then send the deferred STFs to their sites."""
        with self.db.session() as session:
            if not processing_held(session):
                raise WriteRefused(409, "not_suspended", "processing is not suspended",
                                   "there is no operator suspend in effect",
                                   "nothing to do; suspend first if that was the intent")
            state = detector_state(session)
            gated = gate_action(self.config.processing.gate, state["state"],
                                state["substate"]) == "defer"
            waiting = [] if gated else session.execute(
                select(StfRecord.filename, StfRecord.run_number, StfRecord.sequence,
                       StfRecord.site).where(
                    StfRecord.processing_status == ProcessingStatus.DEFERRED)
                .order_by(StfRecord.id)).all()
            sendable = waiting if self.bus is not None else []
            if gated:
                result = (f"detector is {state['state']}/{state['substate']}: deferred STFs "
                          "wait for the state gate")
            elif waiting and self.bus is None:
                result = (f"{len(waiting)} deferred STF(s) wait: this monitor has no bus to "
                          "the processing agents (configure bus.transport: stomp)")
            else:
                result = f"{len(sendable)} deferred STF(s) dispatched"
            text = f"operator {who.username}: {reason}"
            session.add(GateEventRecord(action="resumed", reason=text, backlog=len(sendable)))
            command = self._record(session, who, "resume", "streaming", "processing", result,
                                   reason=reason, dispatched=len(sendable))
        for name, run, seq, site in sendable:
            self._publish(dest.process_queue(site), "process_stf", m.StfWork(
                filename=name, run_number=run, sequence=seq, site=site), run)
        self._publish(dest.EVENTS, "processing_resumed",
                      m.ProcessingGate(reason=text, backlog=len(sendable)), None)
        return command

    # -- jobs -----------------------------------------------------------------------------------
    def _job(self, session: Any, job_id: int) -> JobRecord:
        job = session.get(JobRecord, job_id)
        if job is None:
            raise WriteRefused(404, "not_found", f"job {job_id} does not exist",
                               "no row in the jobs table has that id",
                               "list jobs with GET /api/v1/jobs")
        return job

    def kill_job(self, who: Principal, job_id: int, reason: str) -> dict[str, Any]:
        with self.db.session() as session:
            job = self._job(session, job_id)
            if job.status not in JOB_ACTIVE:
                raise WriteRefused(409, "job_not_active", f"job {job_id} is {job.status}",
                                   "only defined, activated or running jobs can be killed",
                                   "retry a failed job instead (POST .../retry)")
            job.status = JOB.check(job.status, JobStatus.CANCELLED, f"job {job_id}")
            job.ended_at = utcnow()
            job.error = f"killed by {who.username}: {reason}"
            return self._record(session, who, "kill", "job", str(job_id),
                                "job cancelled; the STF's retry policy applies", reason=reason)

    def retry_job(self, who: Principal, job_id: int) -> dict[str, Any]:
        with self.db.session() as session:
            job = self._job(session, job_id)
            if job.kind != JobKind.RECO or not job.stf_filename:
                raise WriteRefused(409, "not_retryable", f"job {job_id} is a {job.kind} job",
                                   "only reco jobs of an STF are retried from the monitor; "
                                   "merges are recovered by the merge agent",
                                   "restart the merge agent to recover merges")
            if job.status not in JOB_UNSUCCESSFUL:
                raise WriteRefused(409, "job_not_failed", f"job {job_id} is {job.status}",
                                   "only failed or cancelled jobs can be retried",
                                   "wait for the job to end, or kill it first")
            if self.bus is None:
                raise WriteRefused(409, "no_bus", "the processing agents cannot be reached",
                                   "this monitor has no message bus to them",
                                   "run the monitor with bus.transport: stomp, or inside the demo")
            claimed = session.execute(update(StfRecord).where(
                StfRecord.filename == job.stf_filename,
                PROCESSING.where(StfRecord.processing_status, ProcessingStatus.QUEUED,
                                 [ProcessingStatus.FAILED]),
            ).values(processing_status=ProcessingStatus.QUEUED))
            if claimed.rowcount != 1:
                raise WriteRefused(409, "stf_not_failed",
                                   f"STF {job.stf_filename} is not in processing state failed",
                                   "it is being retried already or was processed",
                                   f"see GET /api/v1/stfs/{job.stf_filename}")
            stf = session.scalar(select(StfRecord).where(StfRecord.filename == job.stf_filename))
            work = m.StfWork(filename=stf.filename, run_number=stf.run_number,
                             sequence=stf.sequence, site=stf.site)
            command = self._record(session, who, "retry", "job", str(job_id),
                                   f"{stf.filename} queued again at {stf.site}")
        self._publish(dest.process_queue(work.site), "process_stf", work, work.run_number)
        return command

    def set_priority(self, who: Principal, job_id: int, priority: int) -> dict[str, Any]:
        with self.db.session() as session:
            job = self._job(session, job_id)
            if job.status not in JOB_ACTIVE:
                raise WriteRefused(409, "job_not_active", f"job {job_id} is {job.status}",
                                   "priority matters only for jobs still to run",
                                   "set the priority of a defined, activated or running job")
            return self._record(session, who, "priority", "job", str(job_id),
                                f"priority set to {priority}", priority=priority)


    # -- tokens ---------------------------------------------------------------------------------
    def revoke_tokens(self, who: Principal, reason: str, jti: str | None = None,
                      issuer: str | None = None, subject: str | None = None) -> dict[str, Any]:
        """Revoke one token (``jti``), or every token of an identity issued until now. Admins
        may revoke any; anyone else only their own identity's tokens (no jti, no subject)."""
        if not who.authenticated:
            raise WriteRefused(401, "authentication_required", "revoking needs a bearer token",
                               "only a known identity can revoke tokens",
                               "send 'Authorization: Bearer <JWT>'")
        own = jti is None and subject is None
        if not own and "admin" not in who.roles:
            raise WriteRefused(403, "forbidden", f"{who.username} may not revoke others' tokens",
                               "revoking a given token or identity needs the admin role",
                               "send no jti and no subject to revoke all your own tokens")
        if own:
            issuer, subject = who.issuer, who.subject
        elif subject is not None and issuer is None:
            issuer = who.issuer  # the admin's own issuer (the local one for local tokens)
        with self.db.session() as session:
            command = revocation.record(session, who.username, ",".join(sorted(who.roles)),
                                        reason, jti=jti, issuer=issuer, subject=subject)
            return as_dict(command)
