"""STF lifecycles: processing (``stfs.processing_status``) and archiving
(``stfs.archive_status``), the validation verdict and why an STF is rejected."""

from __future__ import annotations

from enum import StrEnum

from epic_wfms.lifecycle.core import Lifecycle, group, move, new


class ProcessingStatus(StrEnum):
    WAITING = "waiting"
    QUEUED = "queued"
    DEFERRED = "deferred"
    NOT_REQUIRED = "not_required"
    REJECTED = "rejected"
    ACTIVATED = "activated"
    RUNNING = "running"
    RETRYING = "retrying"
    PROCESSED = "processed"
    MERGED = "merged"
    FAILED = "failed"


P = ProcessingStatus

STF_ACTIVE = group("STF_ACTIVE", {P.ACTIVATED, P.RUNNING, P.RETRYING},
               "held by a processing agent (a job exists or is due); recovered after a crash")
STF_LOAD = group("STF_LOAD", {P.QUEUED, *STF_ACTIVE},
             "a site's load now: what the decision box's by_load policy counts")
STF_BACKLOG = group("STF_BACKLOG", {*STF_LOAD, P.DEFERRED},
                "waiting or in flight: the monitor's backlog, counted at an operator suspend")
STF_IN_FLIGHT = group("STF_IN_FLIGHT", {*STF_LOAD, P.WAITING},
                  "a run is not finalized while one of its valid STFs is here")
STF_DONE = group("STF_DONE", {P.PROCESSED, P.MERGED}, "processed (run reports count these)")

PROCESSING = Lifecycle(
    "STF processing", "stfs.processing_status", ProcessingStatus,
    {
        P.WAITING: "recorded without a gate decision (the schema's default; ingest records "
                   "the gate's decision with the STF)",
        P.QUEUED: "the gate says process: a process_stf request is on its site's queue (a "
                  "new one at another site if its site becomes unusable: rerouted)",
        P.DEFERRED: "captured in standby, processing suspended by an operator, or no E1 "
                    "usable when routed: caught up on resume, when an E1 is usable, or at "
                    "the end of the run (rerouted if its site becomes unusable)",
        P.NOT_REQUIRED: "archive only: outside a run, routed to no site, or the gate says "
                        "archive_only",
        P.REJECTED: "failed validation against the DAQ's metadata: neither archived nor "
                    "processed",
        P.ACTIVATED: "claimed by a processing agent: stage-in and job submission under way",
        P.RUNNING: "a reco job of the STF started on a worker",
        P.RETRYING: "an attempt failed; the next one is due after the backoff",
        P.PROCESSED: "reco output registered",
        P.MERGED: "its reco output is in a partial merge that is done",
        P.FAILED: "every attempt failed (integrity issue processing_failed)",
    },
    [
        new(P.QUEUED, "ingest: the gate action is process"),
        new(P.DEFERRED, "ingest: the gate action is defer"),
        new(P.NOT_REQUIRED, "ingest: outside a run, routed nowhere, or gate action "
                            "archive_only"),
        new(P.REJECTED, "ingest: size, checksum or readability does not match the DAQ; or "
                        "an announced file never appeared (testbed STFs, validation missing)"),
        new(P.WAITING, "a row written without a processing status (schema default)"),
        move([P.WAITING], P.QUEUED, "the gate applied to an STF recorded without it"),
        move([P.WAITING], P.DEFERRED, "the gate applied to an STF recorded without it"),
        move([P.WAITING], P.NOT_REQUIRED, "the gate applied to an STF recorded without it"),
        move([P.QUEUED], P.DEFERRED, "processing agent: an operator suspended processing"),
        move([P.QUEUED, P.DEFERRED], P.ACTIVATED,
             "processing agent claims it (compare-and-set: one consumer dispatches)"),
        move([P.ACTIVATED], P.QUEUED,
             "processing agent: staging or submitting raised; the claim is released for "
             "the bus's redelivery"),
        move([P.ACTIVATED, P.RETRYING], P.RUNNING, "executor: its job started on a worker"),
        move([P.ACTIVATED, P.RUNNING, P.RETRYING], P.RETRYING,
             "retry policy: stage-in or job failed (or was lost), attempts left"),
        move([P.ACTIVATED, P.RUNNING, P.RETRYING], P.FAILED,
             "retry policy: stage-in or job failed, attempts used up"),
        move([P.RUNNING], P.PROCESSED, "processing agent: job finished, output registered"),
        move([P.ACTIVATED, P.RETRYING], P.PROCESSED,
             "as above, for a job whose start was not seen (PanDA is polled)"),
        move([P.PROCESSED], P.MERGED, "merging: its partial merge is done"),
        move([P.FAILED], P.QUEUED, "monitor: an operator retried its failed job"),
    ],
    [STF_ACTIVE, STF_LOAD, STF_BACKLOG, STF_IN_FLIGHT, STF_DONE],
)


class ArchiveStatus(StrEnum):
    PENDING = "pending"
    ARCHIVED = "archived"
    FAILED = "failed"
    NOT_ARCHIVED = "not_archived"


A = ArchiveStatus

ARCHIVE = Lifecycle(
    "STF archive", "stfs.archive_status", ArchiveStatus,
    {
        A.PENDING: "valid STF, its archive request is sent",
        A.ARCHIVED: "the archive rule to the E1 tapes is OK",
        A.FAILED: "the archive rule is STUCK (integrity issue archive_failed)",
        A.NOT_ARCHIVED: "rejected at ingest: never archived",
    },
    [
        new(A.PENDING, "ingest: a valid STF"),
        new(A.NOT_ARCHIVED, "ingest: a rejected STF (or one whose file never appeared)"),
        move([A.PENDING, A.FAILED], A.ARCHIVED,
             "archiver: the rule is OK (a failed STF's redelivered request makes a new rule)"),
        move([A.PENDING], A.FAILED, "archiver: the rule is STUCK"),
    ],
)


class Validation(StrEnum):
    """The verdict of ingest's check against the DAQ's metadata (``stfs.validation``)."""

    OK = "ok"
    CORRUPT = "corrupt"
    MISSING = "missing"  # announced without its file (the testbed), the file never appeared


class RejectionKind(StrEnum):
    """Why ingest rejected an STF: the integrity issue kind and ``stf_rejected``'s ``kind``."""

    UNREADABLE = "unreadable"
    SIZE_MISMATCH = "size_mismatch"
    CHECKSUM_MISMATCH = "checksum_mismatch"


class AwaitedStatus(StrEnum):
    """An STF announced without its file (``awaited_stfs.status``: the testbed's stf_gen)."""

    AWAITING = "awaiting"
    ARRIVED = "arrived"
    MISSING = "missing"
    REJECTED = "rejected"


W = AwaitedStatus

AWAITED = Lifecycle(
    "awaited STF", "awaited_stfs.status", AwaitedStatus,
    {
        W.AWAITING: "announced (stf_gen); its file is looked for in the DAQ buffer",
        W.ARRIVED: "its file appeared: measured and announced to ingest as stf_available",
        W.MISSING: "no file within testbed.file_grace_s: recorded as an STF with validation "
                   "missing, in the run's one stf_file_missing issue",
        W.REJECTED: "its file appeared but the announcement cannot be used (dead-lettered)",
    },
    [
        new(W.AWAITING, "testbed bridge: stf_gen received"),
        move([W.AWAITING], W.ARRIVED, "testbed bridge: the file is there"),
        move([W.AWAITING], W.MISSING, "testbed bridge: the grace passed without the file"),
        move([W.AWAITING], W.REJECTED, "testbed bridge: the file is there, the message is not "
                                        "usable"),
    ],
)
