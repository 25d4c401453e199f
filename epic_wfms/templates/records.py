"""Bookkeeping of template submissions, their step runs and production tag usage (R1.12)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy import select, update

from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.lifecycle.template import (
    STEP_RUN,
    SUBMISSION,
    SUBMISSION_ENDED,
    StepRunStatus,
    SubmissionStatus,
)
from epic_wfms.store.accounting import Usage, insert_usage
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    PandaTaskRecord,
    ProductionTagUsageRecord,
    TemplateStepRunRecord,
    TemplateSubmissionRecord,
    utcnow,
)
from epic_wfms.templates.schema import RenderedWorkflow
from epic_wfms.templates.tags import UsageLookup

LOCAL_SITE = "LOCAL"  # where the embedded backend runs a template's steps: this host
USE_CASE_CLASS = {  # template use case -> workflow class of the resource accounting (R8.6)
    "streaming_reco": "streaming", "fast_monitoring": "streaming",
    "first_pass_reco": "reconstruction", "calibration": "calibration",
    "simulation": "simulation", "reprocessing": "reprocessing", "analysis": "analysis",
    "ml_training": "ml",
}


def current_user() -> str:
    """Who submits from this process: ``EPIC_WFMS_USER``, else the login name."""
    return os.environ.get("EPIC_WFMS_USER") or getpass.getuser()


def record_submission(db: Database, workflow: RenderedWorkflow, target: str, dry_run: bool,
                      status: SubmissionStatus = SubmissionStatus.SUBMITTED,
                      runtime: str | None = None, username: str | None = None) -> int:
    """Store the rendered workflow with its template version and hashes, who submitted it and
    the campaign's priority; return its id."""
    with db.session() as session:
        record = TemplateSubmissionRecord(
            template=workflow.template, template_version=workflow.template_version,
            template_hash=workflow.template_hash, rendered_hash=workflow.rendered_hash,
            target=target, dry_run=dry_run, campaign=workflow.campaign.name,
            activity=workflow.campaign.activity,
            parameters=workflow.model_dump(mode="json")["parameters"],
            rendered=workflow.model_dump(mode="json", by_alias=True),
            status=SUBMISSION.check(None, status), runtime=runtime,
            username=username or current_user(),
            priority=workflow.campaign.priority)
        session.add(record)
        session.flush()
        submission_id = record.id
        if workflow.campaign.activity == "production" and not dry_run:
            _record_tags(session, workflow, submission_id)
    return submission_id


def _record_tags(session: Any, workflow: RenderedWorkflow, submission_id: int) -> None:
    for kind, definition in workflow.tags.items():
        if session.get(ProductionTagUsageRecord, definition["tag"]) is None:
            session.add(ProductionTagUsageRecord(
                tag=definition["tag"], kind=kind, content_hash=definition["content_hash"],
                submission_id=submission_id))


def finish_submission(db: Database, submission_id: int, status: SubmissionStatus,
                      error: str | None = None, runtime: str | None = None) -> None:
    with db.session() as session:
        record = session.get(TemplateSubmissionRecord, submission_id)
        if not (status == SubmissionStatus.CANCELLED and record.error):
            record.error = error  # an operator's kill keeps its reason
        if record.status != status:
            record.status = SUBMISSION.check(record.status, status,
                                             f"submission {submission_id}")
        if runtime:
            record.runtime = runtime
        if status in SUBMISSION_ENDED:
            record.finished_at = utcnow()


def start_step_run(db: Database, submission_id: int, step: str, iteration: int, job: int,
                   attempt: int, command: str, runtime: str) -> int:
    with db.session() as session:
        record = TemplateStepRunRecord(
            submission_id=submission_id, step=step, iteration=iteration, job_index=job,
            attempt=attempt, status=StepRunStatus.RUNNING, command=command,
            runtime=runtime)
        session.add(record)
        session.flush()
        return record.id


def end_step_run(db: Database, run_id: int, status: StepRunStatus, exit_code: int | None,
                 outputs: list[str], message: str | None = None, cores: int = 1,
                 gpus: int = 0) -> None:
    """End a step run and account its resources to the submission's template and user."""
    with db.session() as session:
        record = session.get(TemplateStepRunRecord, run_id)
        record.status = STEP_RUN.check(record.status, status, f"step run {run_id}")
        record.exit_code, record.message = exit_code, message
        record.outputs = {"files": outputs}
        record.ended_at = utcnow()
        submission = session.get(TemplateSubmissionRecord, record.submission_id)
        insert_usage(session, [Usage(
            f"step:{run_id}", LOCAL_SITE, LOCAL_SITE,
            USE_CASE_CLASS.get(submission.rendered.get("use_case", ""), "analysis"),
            JobStatus.FINISHED if status == StepRunStatus.FINISHED else JobStatus.FAILED, cores,
            record.started_at, max(record.ended_at, record.started_at), submission.template,
            submission.username, gpus)])


def link_panda_tasks(db: Database, submission_id: int, task_ids: list[int]) -> None:
    """The PanDA tasks a submission made (the monitor shows them under it)."""
    if task_ids:
        with db.session() as session:
            session.execute(update(PandaTaskRecord).where(
                PandaTaskRecord.jedi_task_id.in_(task_ids)).values(submission_id=submission_id))


def link_idds_request(db: Database, submission_id: int, request_id: int) -> None:
    """The iDDS request a submission became (``epic-wfms idds status <id>`` follows it)."""
    with db.session() as session:
        session.execute(update(TemplateSubmissionRecord).where(
            TemplateSubmissionRecord.id == submission_id).values(idds_request_id=request_id))


def submission_status(db: Database, submission_id: int) -> str | None:
    with db.session() as session:
        record = session.get(TemplateSubmissionRecord, submission_id)
        return None if record is None else record.status


def tag_usage_lookup(db: Database) -> UsageLookup:
    """For TagCatalogue: the content hash a tag had when production first used it."""
    def lookup(tag: str) -> str | None:
        with db.session() as session:
            record = session.get(ProductionTagUsageRecord, tag)
            return record.content_hash if record else None
    return lookup


def submissions(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(TemplateSubmissionRecord)
                               .order_by(TemplateSubmissionRecord.id.desc()).limit(limit))
        return [{"id": r.id, "template": r.template, "version": r.template_version,
                 "target": r.target, "dry_run": r.dry_run, "status": r.status,
                 "campaign": r.campaign, "rendered_hash": r.rendered_hash,
                 "runtime": r.runtime, "error": r.error,
                 "idds_request_id": r.idds_request_id} for r in rows]


def step_runs(db: Database, submission_id: int) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(TemplateStepRunRecord)
                               .where(TemplateStepRunRecord.submission_id == submission_id)
                               .order_by(TemplateStepRunRecord.id))
        return [{"step": r.step, "iteration": r.iteration, "job": r.job_index,
                 "attempt": r.attempt, "status": r.status, "exit_code": r.exit_code,
                 "runtime": r.runtime, "outputs": r.outputs.get("files", []),
                 "message": r.message} for r in rows]
