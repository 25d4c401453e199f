"""Run records: created on first sight (announcement or first STF), updated by the lifecycle."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from epic_wfms.store.database import Database
from epic_wfms.store.schema import RunRecord

RUN_STATUS_ORDER = ("announced", "open", "closed", "finished", "incomplete")


def ensure_run(db: Database, number: int, **fields: object) -> None:
    """Create run ``number`` if unknown, then apply ``fields`` that are not None.

    A run's status only moves forward: run control and the state topic are separate
    subscriptions, so a late ``start_run`` must not reopen a run that beam loss closed."""
    for _ in range(2):
        try:
            with db.session() as session:
                run = session.get(RunRecord, number)
                if run is None:
                    run = RunRecord(
                        number=number, run_type="physics", detector_config="unknown",
                        status="announced",
                    )
                    session.add(run)
                for key, value in fields.items():
                    if value is not None and not (key == "status" and _backwards(run, value)):
                        setattr(run, key, value)
            return
        except IntegrityError:
            continue  # created concurrently by another component; apply the fields again
    raise RuntimeError(f"could not create or update run {number}")


def _backwards(run: RunRecord, status: object) -> bool:
    order = RUN_STATUS_ORDER
    return run.status in order and status in order and order.index(status) < order.index(
        run.status)


def get_run(db: Database, number: int) -> RunRecord | None:
    with db.session() as session:
        return session.get(RunRecord, number)
