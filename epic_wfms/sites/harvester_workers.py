"""Harvester's workers per queue, read from Harvester's own database (R8.2).

Harvester keeps its workers in ``work_table`` (one row per worker: queue ``computingSite``,
``status``, batch ID, times, exit code and diagnostics) and the PanDA jobs each worker ran in
``jw_table`` (``PandaID``, ``workerID``). In pull mode Harvester's sweeper drops those
relations (it holds no jobs), so ePIC's monitor plugin also keeps them in the worker's
``workAttributes`` (``pandaIDs``): a worker's jobs are the union of both.

An operator points epic-wfms at that database: Harvester's SQLite file (``[db]
database_filename`` of panda_harvester.cfg) or, for a MariaDB deployment, a SQLAlchemy URL.
Reading is read-only (SQLite is opened ``mode=ro``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from epic_wfms.errors import EpicWfmsError

#: WorkSpec statuses: a worker in one of these still holds (or waits for) a batch slot
ALIVE = ("submitted", "ready", "running", "idle", "pending")
FINAL = ("finished", "failed", "cancelled", "missed")


class HarvesterDbError(EpicWfmsError):
    """Harvester's database cannot be read."""


@dataclass(frozen=True)
class HarvesterWorker:
    worker_id: int
    queue: str
    status: str
    batch_id: str | None
    submit_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    exit_code: int | None
    native_status: str | None
    diagnostics: str | None
    panda_ids: tuple[int, ...] = field(default=())

    @property
    def alive(self) -> bool:
        return self.status in ALIVE


def database_url(location: str | Path) -> str:
    """A SQLAlchemy URL for Harvester's database: a URL as given, a file path read-only."""
    location = str(location)
    if "://" in location:
        return location
    path = Path(location).resolve()
    if not path.is_file():
        raise HarvesterDbError(f"no Harvester database at {path}",
                               fix="give [db] database_filename of panda_harvester.cfg")
    return f"sqlite:///file:{path}?mode=ro&uri=true"


_WORKERS = ("SELECT workerID, computingSite, status, batchID, submitTime, startTime, endTime, "
            "nativeExitCode, nativeStatus, diagMessage, workAttributes FROM work_table")
_JOBS = "SELECT workerID, PandaID FROM jw_table"


def read_workers(location: str | Path, queue: str | None = None) -> list[HarvesterWorker]:
    """Every worker Harvester knows (of ``queue`` only, if given), newest first."""
    where, params = (" WHERE computingSite = :queue", {"queue": queue}) if queue else ("", {})
    engine = create_engine(database_url(location))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(_WORKERS + where), params).all()
            jobs: dict[int, list[int]] = {}
            for worker_id, panda_id in conn.execute(text(_JOBS)):
                jobs.setdefault(int(worker_id), []).append(int(panda_id))
    except SQLAlchemyError as error:
        raise HarvesterDbError(f"cannot read Harvester's workers from {location}",
                               str(error.__cause__ or error)[:300],
                               "check the path/URL and that Harvester created its tables"
                               ) from error
    finally:
        engine.dispose()
    workers = [HarvesterWorker(int(r[0]), r[1], r[2], r[3], _time(r[4]), _time(r[5]),
                               _time(r[6]), r[7], r[8], r[9], tuple(sorted(
                                   set(jobs.get(int(r[0]), ())) | _recorded_jobs(r[10]))))
               for r in rows]
    return sorted(workers, key=lambda w: w.worker_id, reverse=True)


def per_queue(workers: list[HarvesterWorker]) -> dict[str, Counter]:
    """{queue: Counter(status -> workers)}."""
    out: dict[str, Counter] = {}
    for worker in workers:
        out.setdefault(worker.queue, Counter())[worker.status] += 1
    return dict(sorted(out.items()))


def _recorded_jobs(attributes: object) -> set[int]:
    """PandaIDs kept in a worker's ``workAttributes`` (JSON) by ePIC's monitor plugin."""
    try:
        ids = json.loads(attributes).get("pandaIDs", []) if attributes else []
        return {int(i) for i in ids}
    except (TypeError, ValueError, AttributeError):
        return set()


def _time(value: object) -> datetime | None:
    """Harvester's SQLite stores naive UTC timestamps as text."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
