"""Merge lifecycle (``merges.status``) and the two kinds of merge (``merges.kind``).

A partial merge combines the reco outputs of N STFs of one site (``merges.site``); the gather
combines a run's partial merges into the run's merged output. The gather belongs to the run,
not to a site: its ``site`` is NULL (its job runs at the first configured site, as the jobs
table records).
"""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new
from epic_wfms.lifecycle.job import JobKind


class MergeKind(StrEnum):
    PARTIAL = "partial"
    GATHER = "gather"

    @property
    def job_kind(self) -> JobKind:
        return JobKind.GATHER if self is MergeKind.GATHER else JobKind.MERGE


class MergeStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


M = MergeStatus

MERGE_ENDED = group("MERGE_ENDED", {M.DONE, M.FAILED}, "the gather ended: its run can finish")

MERGE = Lifecycle(
    "merge", "merges.status", MergeStatus,
    {
        M.RUNNING: "its job is submitted (again after a failed attempt or a restart)",
        M.DONE: "output registered; `output` is the name actually written",
        M.FAILED: "its job failed max_attempts times (integrity issue merge_failed)",
        M.SUPERSEDED: "a gather of a run that got an STF after it was finalized: the run is "
                      "gathered again, and the new gather is the run's",
    },
    [
        new(M.RUNNING, "merging: N processed STFs of a site, the remainder, or the gather"),
        new(M.DONE, "merging: a gather with no partial merge to gather"),
        move([M.RUNNING], M.DONE, "merging: its job finished"),
        move([M.RUNNING], M.FAILED, "merging: its last attempt failed"),
        move([M.DONE, M.FAILED], M.SUPERSEDED, "ingest: a late STF reopened the run "
             "(streaming/late_data.py)"),
    ],
    [MERGE_ENDED],
)
