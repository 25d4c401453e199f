"""Operator and owner writes on the workload (R7.2, R7.3, R13.3): kill, retry and reprioritise
PanDA tasks, template submissions and campaigns.

PanDA tasks are acted on through panda-client (``wfms.panda`` of this configuration), then
the store is updated; a local submission is killed by marking it cancelled (its runner stops
before its next job). Who may: the roles of the permission (``job.control`` for kill/retry,
``priority`` for priorities), or the task's or submission's owner when signed in. Every write
is an operator command with its result, like the streaming writes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.lifecycle.template import SUBMISSION, SUBMISSION_KILLABLE, SubmissionStatus
from epic_wfms.monitor.auth import Authenticator, Principal
from epic_wfms.monitor.writes import Operations, WriteRefused
from epic_wfms.store.schema import PandaTaskRecord, TemplateSubmissionRecord, utcnow
from epic_wfms.wfms.panda import operations as panda_ops

RETRYABLE_TASK = ("failed", "finished", "broken", "aborted", "exhausted")


class WorkControl:
    def __init__(self, config: Config, ops: Operations, auth: Authenticator) -> None:
        self.config, self.ops, self.auth, self.db = config, ops, auth, ops.db
        self._panda: Any = None

    # -- who may ----------------------------------------------------------------------------
    def authorize(self, who: Principal, permission: str, owner: str | None) -> None:
        """The permission's roles, or the owner acting on their own work (R13.3)."""
        if who.authenticated and owner and who.username == owner:
            return
        self.auth.require(who, permission)

    # -- PanDA ------------------------------------------------------------------------------
    def panda(self) -> Any:
        if self._panda is None:
            from epic_wfms.installation import build_panda_connection  # the backends' place

            self._panda = build_panda_connection(self.config)
        if self._panda is None:
            raise WriteRefused(409, "no_panda", "no PanDA server is configured here",
                               "this installation runs work on the embedded backend "
                               "(wfms.backend: embedded)",
                               "set wfms.backend: panda with wfms.panda.url and token_file")
        return self._panda

    def _on_panda(self, what: str, call: Any) -> str:
        try:
            return str(call())
        except WriteRefused:
            raise
        except EpicWfmsError as error:
            raise WriteRefused(502, "panda_refused", f"PanDA could not {what}",
                               str(error), "see the task on PanDA; retry later") from error

    def _task(self, session: Any, task_id: int) -> PandaTaskRecord:
        task = session.get(PandaTaskRecord, task_id)
        if task is None:
            raise WriteRefused(404, "not_found", f"task {task_id} is not in the store",
                               "only tasks submitted through epic-wfms are tracked",
                               "list tasks with GET /api/v1/tasks")
        return task

    def task_owner(self, task_id: int) -> str | None:
        with self.db.session() as session:
            return self._task(session, task_id).username

    def kill_task(self, who: Principal, task_id: int, reason: str) -> dict[str, Any]:
        self.authorize(who, "job.control", self.task_owner(task_id))
        answer = self._on_panda(f"kill task {task_id}",
                                lambda: panda_ops.kill(self.panda(), task_id))
        with self.db.session() as session:
            task = self._task(session, task_id)
            task.error, task.updated_at = f"killed by {who.username}: {reason}", utcnow()
            return self.ops._record(session, who, "kill", "task", str(task_id),
                                    f"PanDA: {answer or 'kill requested'}", reason=reason)

    def retry_task(self, who: Principal, task_id: int) -> dict[str, Any]:
        with self.db.session() as session:
            task = self._task(session, task_id)
            owner, status = task.username, task.status
        self.authorize(who, "job.control", owner)
        if status not in RETRYABLE_TASK:
            raise WriteRefused(409, "task_not_retryable", f"task {task_id} is {status}",
                               f"PanDA retries tasks that are {', '.join(RETRYABLE_TASK)}",
                               "wait for the task to end, or kill it first")
        answer = self._on_panda(f"retry task {task_id}",
                                lambda: panda_ops.retry(self.panda(), task_id))
        with self.db.session() as session:
            return self.ops._record(session, who, "retry", "task", str(task_id),
                                    f"PanDA: {answer or 'retry requested'}")

    def set_task_priority(self, who: Principal, task_id: int, priority: int) -> dict[str, Any]:
        self.authorize(who, "priority", self.task_owner(task_id))
        answer = self._on_panda(f"change the priority of task {task_id}",
                                lambda: panda_ops.set_priority(self.panda(), self.db, task_id,
                                                               priority))
        with self.db.session() as session:
            return self.ops._record(session, who, "priority", "task", str(task_id),
                                    f"priority {priority}; PanDA: {answer}", priority=priority)

    # -- submissions and campaigns ------------------------------------------------------------
    def _submission(self, session: Any, submission_id: int) -> TemplateSubmissionRecord:
        record = session.get(TemplateSubmissionRecord, submission_id)
        if record is None:
            raise WriteRefused(404, "not_found", f"submission {submission_id} does not exist",
                               "no template submission has that id",
                               "list submissions with GET /api/v1/submissions")
        return record

    def _tasks_of(self, session: Any, submission_id: int) -> list[tuple[int, str]]:
        return [tuple(r) for r in session.execute(select(
            PandaTaskRecord.jedi_task_id, PandaTaskRecord.status)
            .where(PandaTaskRecord.submission_id == submission_id))]

    def kill_submission(self, who: Principal, submission_id: int, reason: str
                        ) -> dict[str, Any]:
        with self.db.session() as session:
            record = self._submission(session, submission_id)
            owner, status, tasks = record.username, record.status, self._tasks_of(
                session, submission_id)
        self.authorize(who, "job.control", owner)
        self._refuse_unless_killable(submission_id, status)
        killed = [t for t, s in tasks if s not in RETRYABLE_TASK]
        for task_id in killed:
            self._on_panda(f"kill task {task_id}", lambda t=task_id: panda_ops.kill(
                self.panda(), t))
        with self.db.session() as session:
            record = self._submission(session, submission_id)
            self._refuse_unless_killable(submission_id, record.status)  # it may have ended
            record.status = SUBMISSION.check(record.status, SubmissionStatus.CANCELLED,
                                             f"submission {submission_id}")
            record.error = f"killed by {who.username}: {reason}"
            record.finished_at = utcnow()
            return self.ops._record(
                session, who, "kill", "submission", str(submission_id),
                f"cancelled; {len(killed)} PanDA task(s) killed" if tasks else
                "cancelled; its runner stops before the next job", reason=reason)

    @staticmethod
    def _refuse_unless_killable(submission_id: int, status: str) -> None:
        if status not in SUBMISSION_KILLABLE:
            raise WriteRefused(409, "submission_not_active",
                               f"submission {submission_id} is {status}",
                               f"only {' or '.join(sorted(SUBMISSION_KILLABLE))} submissions are "
                               "killed",
                               "retry it instead, or submit the template again")

    def retry_submission(self, who: Principal, submission_id: int) -> dict[str, Any]:
        with self.db.session() as session:
            record = self._submission(session, submission_id)
            owner, target, tasks = record.username, record.target, self._tasks_of(
                session, submission_id)
        self.authorize(who, "job.control", owner)
        retryable = [t for t, s in tasks if s in RETRYABLE_TASK and s != "finished"]
        if not retryable:
            why = ("a local submission ran in the process that submitted it" if target == "local"
                   else "none of its PanDA tasks failed")
            raise WriteRefused(409, "not_retryable",
                               f"submission {submission_id} has nothing to retry", why,
                               "submit the template again (epic-wfms template submit)")
        for task_id in retryable:
            self._on_panda(f"retry task {task_id}", lambda t=task_id: panda_ops.retry(
                self.panda(), t))
        with self.db.session() as session:
            record = self._submission(session, submission_id)
            if record.status != SubmissionStatus.RUNNING:
                record.status = SUBMISSION.check(record.status, SubmissionStatus.RUNNING,
                                                 f"submission {submission_id}")
            return self.ops._record(session, who, "retry", "submission", str(submission_id),
                                    f"{len(retryable)} PanDA task(s) retried")

    def set_submission_priority(self, who: Principal, submission_id: int, priority: int
                                ) -> dict[str, Any]:
        with self.db.session() as session:
            record = self._submission(session, submission_id)
            owner, tasks = record.username, self._tasks_of(session, submission_id)
        self.authorize(who, "priority", owner)
        for task_id, _ in tasks:
            self._on_panda(f"change the priority of task {task_id}",
                           lambda t=task_id: panda_ops.set_priority(self.panda(), self.db, t,
                                                                    priority))
        with self.db.session() as session:
            self._submission(session, submission_id).priority = priority
            return self.ops._record(session, who, "priority", "submission", str(submission_id),
                                    f"priority {priority} ({len(tasks)} PanDA task(s))",
                                    priority=priority)

    def set_campaign_priority(self, who: Principal, campaign: str, priority: int
                              ) -> dict[str, Any]:
        """A campaign's priority is its submissions' (and their PanDA tasks'): production
        managers reprioritise a whole campaign at once (R7.4)."""
        self.auth.require(who, "priority")
        with self.db.session() as session:
            ids = list(session.scalars(select(TemplateSubmissionRecord.id)
                                       .where(TemplateSubmissionRecord.campaign == campaign)))
        if not ids:
            raise WriteRefused(404, "not_found", f"campaign {campaign!r} has no submissions",
                               "campaigns are named by the submissions of their templates",
                               "list campaigns with GET /api/v1/campaigns")
        for submission_id in ids:
            self.set_submission_priority(who, submission_id, priority)
        with self.db.session() as session:
            return self.ops._record(session, who, "priority", "campaign", campaign,
                                    f"priority {priority} for {len(ids)} submission(s)",
                                    priority=priority)
