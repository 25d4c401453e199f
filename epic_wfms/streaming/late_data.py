"""Late STFs: an STF of a run that was already finalized (or is being finalized) is never
dead-lettered nor dropped. Ingest reopens the run (``finished``/``incomplete`` -> ``closed``)
and its datasets, records the STF as usual, and merging gathers the run again: the new
gather supersedes the old one, and the run's ``merged_output`` names the new file, which
holds every merged STF of the run exactly once (streaming/merging.py).

Ingest calls ``reopen_ended`` before registering a batch (so the attachment to the run's
datasets succeeds) and again after recording it: a run that merging finalized in between is
reopened then, and merging's last check, made under the run's row lock, sees the new STF
otherwise. Each reopening is logged and recorded as a resolved ``late_stf`` integrity issue
(an audit line, not a problem: nothing is left to do).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select

from epic_wfms.lifecycle.run import RUN, RUN_ENDED, RunStatus
from epic_wfms.store.schema import IntegrityIssueRecord, RunRecord, utcnow
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.runs import run_datasets

log = logging.getLogger(__name__)

LATE_STF = "late_stf"


def reopen_ended(ctx: StreamingContext, run_numbers: Iterable[int | None],
                 filenames: dict[int, list[str]] | None = None) -> list[int]:
    """Reopen those of ``run_numbers`` that ended; returns them."""
    runs = sorted({r for r in run_numbers if r is not None})
    if not runs:
        return []
    with ctx.db.session() as session:
        ended = list(session.scalars(select(RunRecord.number).where(
            RunRecord.number.in_(runs), RunRecord.status.in_(RUN_ENDED))))
    reopened = [run for run in ended if _reopen(ctx, run, (filenames or {}).get(run, []))]
    for run in reopened:
        reopen_datasets(ctx, run)
    return reopened


def reopen_datasets(ctx: StreamingContext, run_number: int) -> None:
    for dataset in run_datasets(ctx, run_number):
        ctx.ddm.reopen_dataset(dataset)


def _reopen(ctx: StreamingContext, run_number: int, filenames: list[str]) -> bool:
    with ctx.db.session() as session:
        run = session.get(RunRecord, run_number, with_for_update=True)
        if run is None or run.status not in RUN_ENDED:
            return False  # reopened meanwhile by another batch
        was = run.status
        run.status = RUN.check(run.status, RunStatus.CLOSED, f"run {run_number}")
        run.finished_at = None
        detail = (f"run {run_number} was {was} when STF(s) "
                  f"{', '.join(filenames[:5]) or '(of a batch)'} arrived: reopened and "
                  "gathered again (docs/operations.md#late-stfs)")
        session.add(IntegrityIssueRecord(kind=LATE_STF, detail=detail, run_number=run_number,
                                         filename=filenames[0] if filenames else None,
                                         resolved_at=utcnow()))
    log.warning("%s", detail)
    return True
