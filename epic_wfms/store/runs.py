"""Run records: created on first sight (announcement or first STF), updated by the lifecycle."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from epic_wfms.lifecycle.run import RUN, RUN_ENDED, RunStatus
from epic_wfms.store.database import Database
from epic_wfms.store.schema import RunRecord


def ensure_run(db: Database, number: int, **fields: object) -> None:
    """Create run ``number`` if unknown (``announced``), then apply ``fields`` that are not
    None. A status the run lifecycle does not allow from the current one is ignored: run
    control and the state topic are separate subscriptions, so a late ``start_run`` must not
    reopen a run that beam loss closed, nor a redelivered end_run a finalized one (only a late
STF reopens a run: streaming/late_data.py; lifecycle/run.py)."""
    for _ in range(2):
        try:
            with db.session() as session:
                run = session.get(RunRecord, number)
                if run is None:
                    run = RunRecord(
                        number=number, run_type="physics", detector_config="unknown",
                        status=RUN.check(None, RunStatus.ANNOUNCED),
                    )
                    session.add(run)
                    session.flush()  # created announced; a status given moves it from there
                for key, value in fields.items():
                    if value is not None and not (key == "status" and (
                            not RUN.allowed(run.status, value) or run.status in RUN_ENDED)):
                        setattr(run, key, value)
            return
        except IntegrityError:
            continue  # created concurrently by another component; apply the fields again
    raise RuntimeError(f"could not create or update run {number}")


def get_run(db: Database, number: int) -> RunRecord | None:
    with db.session() as session:
        return session.get(RunRecord, number)
