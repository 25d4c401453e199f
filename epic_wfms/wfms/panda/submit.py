"""Submit JEDI task dictionaries to PanDA and record them: the entry point for templates.

``submit_tasks(task_params, connection, db)`` is what ``epic-wfms template submit --target
panda`` calls with the dictionaries a rendered template produced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import PandaTaskRecord, utcnow
from epic_wfms.wfms.panda.client import PandaConnection
from epic_wfms.wfms.panda.errors import TaskParamsError
from epic_wfms.wfms.panda.taskparams import MERGE_PROCESSING, PROMPT_PROCESSING, validate_all

# a run's E1 subset (``swf.<run>.E1_<site>``) or the whole run's dataset (``swf.<run>.run``)
_SUBSET = re.compile(r"swf\.(?P<run>\d{6})\.(?:(?P<site>E1_[A-Z0-9]+)|run\b)")


@dataclass(frozen=True)
class TaskRecord:
    """What PanDA said about one submitted task; ``jedi_task_id`` is PanDA's own id."""

    jedi_task_id: int
    task_name: str
    status: str
    kind: str
    run_number: int | None = None
    site: str | None = None
    input_dataset: str | None = None


def submit_tasks(task_params: Iterable[dict], connection: PandaConnection,
                 db: Database | None = None) -> list[TaskRecord]:
    """Validate all, then submit each; recorded in ``db`` (table ``panda_tasks``) if given.

    All dictionaries are checked before the first submission, so a bad one submits nothing.
    """
    checked = validate_all(list(task_params))
    if db is not None:
        _refuse_resubmission(db, connection.settings.url, checked)
    records = []
    for params in checked:
        task_id = connection.submit_task(params)
        record = describe(task_id, params)
        if db is not None:
            record_task(db, connection.settings.url, record, params)
        records.append(record)
    return records


def _refuse_resubmission(db: Database, server: str, task_params: list[dict]) -> None:
    """PanDA takes a production task name twice (a second task); we submit each once."""
    names = [p["taskName"] for p in task_params]
    with db.session() as session:
        known = session.scalars(select(PandaTaskRecord).where(
            PandaTaskRecord.server == server, PandaTaskRecord.task_name.in_(names))).all()
        if known:
            ids = ", ".join(f"{t.task_name} = jediTaskID {t.jedi_task_id}" for t in known)
            raise TaskParamsError(f"already submitted: {ids}",
                                  why="a second submission would process the same data twice",
                                  fix="retry or kill the existing task (epic-wfms panda tasks)")


def describe(task_id: int, params: dict) -> TaskRecord:
    in_ds = next((i["dataset"] for i in params.get("jobParameters", [])
                  if isinstance(i, dict) and i.get("param_type") == "input"), None)
    match = _SUBSET.search(in_ds or params["taskName"])
    kind = {PROMPT_PROCESSING: "prompt", MERGE_PROCESSING: "merge"}.get(
        params.get("processingType", ""), params.get("processingType") or "production")
    return TaskRecord(task_id, params["taskName"], "submitted", kind,
                      int(match["run"]) if match else None,
                      match["site"] if match else None, in_ds)


def record_task(db: Database, server: str, record: TaskRecord, params: dict) -> None:
    with db.session() as session:
        session.merge(PandaTaskRecord(
            jedi_task_id=record.jedi_task_id, server=server, task_name=record.task_name,
            kind=record.kind, run_number=record.run_number, site=record.site,
            input_dataset=record.input_dataset, status=record.status,
            priority=params.get("taskPriority"), params=params, updated_at=utcnow(),
            username=str(params.get("userName") or ""),
            campaign=str(params.get("campaign") or "")))
