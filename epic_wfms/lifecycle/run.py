"""Run lifecycle (``runs.status``) on the data side. A run's status only moves forward, but
for one move back: an STF that arrives after its run was finalized reopens it to ``closed``
(it is gathered again, streaming/late_data.py). Run control and the state topic are
separate subscriptions, so a late ``start_run`` must not reopen a run that beam loss closed;
``store.runs.ensure_run`` ignores a move the table does not have."""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new


class RunStatus(StrEnum):
    ANNOUNCED = "announced"
    OPEN = "open"
    CLOSED = "closed"
    FINISHED = "finished"
    INCOMPLETE = "incomplete"


R = RunStatus

RUN_LIVE = group("RUN_LIVE", {R.ANNOUNCED, R.OPEN},
             "data may still come: the fast-path pool stays up, a closing state change "
             "closes the run")
RUN_MERGING = group("RUN_MERGING", {R.OPEN, R.CLOSED},
                "the merge role scans it for merges and finalization")

RUN_ENDED = group("RUN_ENDED", {R.FINISHED, R.INCOMPLETE},
              "the run's data side is over: nothing more is merged or closed")

RUN = Lifecycle(
    "run", "runs.status", RunStatus,
    {
        R.ANNOUNCED: "run_imminent received (or the first STF or run-control message of an "
                     "unannounced run)",
        R.OPEN: "start_run received",
        R.CLOSED: "the run ended: end_run, or a state change that closes it (beam_lost or "
                  "detector_fault during a run, end_calib, end_test)",
        R.FINISHED: "merged output gathered, archiving done, datasets closed",
        R.INCOMPLETE: "finalized like finished, but STFs the DAQ declared never arrived, "
                      "announced files never appeared, or dead letters of the run stayed open",
    },
    [
        new(R.ANNOUNCED, "run lifecycle or ingest: the first message about the run"),
        move([R.ANNOUNCED], R.OPEN, "run lifecycle: start_run"),
        move([R.ANNOUNCED, R.OPEN], R.CLOSED,
             "run lifecycle: end_run, or a state change with effect closes"),
        move([R.CLOSED], R.FINISHED, "merging: the run is finalized"),
        move([R.CLOSED], R.INCOMPLETE, "merging: the run is finalized with what is missing "
             "or refused listed (run outcome)"),
        move([R.FINISHED, R.INCOMPLETE], R.CLOSED, "ingest: an STF of the run arrived after "
             "it was finalized: its datasets are reopened and the run is gathered again "
             "(streaming/late_data.py)"),
    ],
    [RUN_LIVE, RUN_MERGING, RUN_ENDED],
)
