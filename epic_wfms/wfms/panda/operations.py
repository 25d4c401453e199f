"""Operator actions on PanDA tasks through panda-client, each followed by a store update."""

from __future__ import annotations

from epic_wfms.store.database import Database
from epic_wfms.store.schema import PandaTaskRecord, utcnow
from epic_wfms.wfms.panda.client import PandaConnection


def kill(connection: PandaConnection, task_id: int) -> str:
    """Ask JEDI to abort the task (its TaskCommando kills the jobs)."""
    return connection.kill_task(task_id)


def retry(connection: PandaConnection, task_id: int, new_params: dict | None = None) -> str:
    """Retry the task's failed and cancelled parts only (JEDI keeps finished files)."""
    return connection.retry_task(task_id, new_params)


def retry_failed_jobs(connection: PandaConnection, task_id: int, extra_attempts: int = 3) -> None:
    """Give failed files more attempts without a task retry (JEDI regenerates their jobs)."""
    connection.increase_attempts(task_id, extra_attempts)


def set_priority(connection: PandaConnection, db: Database | None, task_id: int,
                 priority: int) -> str:
    message = connection.change_priority(task_id, priority)
    if db is not None:
        with db.session() as session:
            task = session.get(PandaTaskRecord, task_id)
            if task is not None:
                task.priority, task.updated_at = priority, utcnow()
    return message


def enable_cloning(connection: PandaConnection, task_id: int, mode: str = "runonce",
                   multiplicity: int = 2) -> str:
    """R7.5: PanDA runs ``multiplicity`` clones of each job; ``runonce`` keeps the first done."""
    return connection.enable_job_cloning(task_id, mode, multiplicity)
