"""Bookkeeping of template submissions, their step runs and production tag usage (R1.12)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from epic_wfms.lifecycle.template import (
    STEP_RUN,
    SUBMISSION,
    SUBMISSION_ENDED,
    StepRunStatus,
    SubmissionStatus,
)
from epic_wfms.store.database import Database
from epic_wfms.store.schema import (
    ProductionTagUsageRecord,
    TemplateStepRunRecord,
    TemplateSubmissionRecord,
    utcnow,
)
from epic_wfms.templates.schema import RenderedWorkflow
from epic_wfms.templates.tags import UsageLookup


def record_submission(db: Database, workflow: RenderedWorkflow, target: str, dry_run: bool,
                      status: SubmissionStatus = SubmissionStatus.SUBMITTED,
                      runtime: str | None = None) -> int:
    """Store the rendered workflow with its template version and hashes; return its id."""
    with db.session() as session:
        record = TemplateSubmissionRecord(
            template=workflow.template, template_version=workflow.template_version,
            template_hash=workflow.template_hash, rendered_hash=workflow.rendered_hash,
            target=target, dry_run=dry_run, campaign=workflow.campaign.name,
            activity=workflow.campaign.activity,
            parameters=workflow.model_dump(mode="json")["parameters"],
            rendered=workflow.model_dump(mode="json", by_alias=True),
            status=SUBMISSION.check(None, status), runtime=runtime)
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
        record.status = SUBMISSION.check(record.status, status, f"submission {submission_id}")
        record.error = error
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
                 outputs: list[str], message: str | None = None) -> None:
    with db.session() as session:
        record = session.get(TemplateStepRunRecord, run_id)
        record.status = STEP_RUN.check(record.status, status, f"step run {run_id}")
        record.exit_code, record.message = exit_code, message
        record.outputs = {"files": outputs}
        record.ended_at = utcnow()


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
                 "runtime": r.runtime, "error": r.error} for r in rows]


def step_runs(db: Database, submission_id: int) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = session.scalars(select(TemplateStepRunRecord)
                               .where(TemplateStepRunRecord.submission_id == submission_id)
                               .order_by(TemplateStepRunRecord.id))
        return [{"step": r.step, "iteration": r.iteration, "job": r.job_index,
                 "attempt": r.attempt, "status": r.status, "exit_code": r.exit_code,
                 "runtime": r.runtime, "outputs": r.outputs.get("files", []),
                 "message": r.message} for r in rows]
