"""Fast-path lifecycles: TF slices (``tf_slices.status``) and standing workers
(``fastpath_workers.status``). Every slice move is a compare-and-set on the slice row
(fastpath/slices.py), so a slice is processed by one worker at a time and completed once."""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new


class SliceStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class SliceOutcome(StrEnum):
    """The ``status`` of a ``slice_result`` message: how one attempt ended."""

    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"


S = SliceStatus

SLICE_OPEN = group("SLICE_OPEN", {S.QUEUED, S.PROCESSING},
                   "not ended: the pool's backlog, recovered after a restart")

SLICE = Lifecycle(
    "TF slice", "tf_slices.status", SliceStatus,
    {
        S.QUEUED: "waiting for a worker (on the normal or express queue)",
        S.PROCESSING: "claimed by one worker for one attempt",
        S.COMPLETED: "result recorded (events, alarms, histograms)",
        S.FAILED: "every attempt failed",
    },
    [
        new(S.QUEUED, "slicer: a TF sample cut into slices"),
        move([S.QUEUED], S.PROCESSING, "worker claims it (compare-and-set)"),
        move([S.PROCESSING], S.COMPLETED, "the claiming worker records the result of its "
                                          "attempt"),
        move([S.PROCESSING], S.QUEUED, "attempt failed or its worker died; attempts left"),
        move([S.PROCESSING], S.FAILED, "attempt failed or its worker died; attempts used up"),
    ],
    [SLICE_OPEN],
)


class WorkerStatus(StrEnum):
    REGISTERED = "registered"
    EXITED = "exited"
    DEAD = "dead"


W = WorkerStatus

WORKER = Lifecycle(
    "fast-path worker", "fastpath_workers.status", WorkerStatus,
    {
        W.REGISTERED: "its payload process is up, it consumes slices",
        W.EXITED: "retired: drained at the end of the run, scaled down or stopped",
        W.DEAD: "its payload died or hung (replaced), or it was lost with its agent",
    },
    [
        new(W.REGISTERED, "pool: worker started"),
        move([W.REGISTERED], W.EXITED, "pool: retired"),
        move([W.REGISTERED], W.DEAD, "pool: found dead and replaced; recovery: agent gone"),
    ],
)
