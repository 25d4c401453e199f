"""The versioned JSON message schema: one envelope, one payload model per message type.

Contract (docs/messages.md): every message carries a unique ``msg_id``, the ``producer``, a
per-producer per-run ``seq`` (gaps and reordering are detectable), the ``schema_version``
(major must match), and the detector ``state``/``substate`` in effect when it was produced.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from epic_wfms.bus import screening
from epic_wfms.errors import MalformedMessageError
from epic_wfms.model.naming import check_file_name
from epic_wfms.model.run import RunType
from epic_wfms.model.stf import SuperTimeFrame, TFSample
from epic_wfms.model.validation import describe_validation_error

SCHEMA_VERSION = "1.1"  # 1.1: reported_state/substate, first_sequence, synchronised
# every file name a message carries follows the naming policy: one safe path component
FileName = Annotated[str, AfterValidator(check_file_name)]


class Envelope(BaseModel):
    """Unknown fields are ignored (tolerant reader): a newer minor version may add fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: str = Field(pattern=r"^\d+\.\d+$")
    msg_id: str = Field(min_length=8, max_length=64)  # the ledger's key column
    msg_type: str = Field(max_length=40)
    producer: str = Field(min_length=1, max_length=100)
    run_number: int | None = None
    seq: int = Field(ge=0)
    created_at: AwareDatetime
    state: str | None = Field(default=None, max_length=40)
    substate: str | None = Field(default=None, max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict)


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _RunControl(_Payload):
    """A run-control source that reports the state in effect (the ePIC testbed) names it;
    the state machine then follows it (docs/statemachine.md#following-a-reported-state)."""

    reported_state: str | None = None
    reported_substate: str | None = None


class RunImminent(_RunControl):
    run_number: int = Field(gt=0)
    run_type: RunType = RunType.PHYSICS
    detector_config: str = "epic-default"
    target_stfs: int | None = None


class RunBoundary(_RunControl):
    """start_run / pause_run / resume_run."""

    run_number: int = Field(gt=0)
    reason: str = ""


class EndRun(_RunControl):
    run_number: int = Field(gt=0)
    total_stfs: int = Field(ge=0, le=1_000_000,
                            description="number of STFs the DAQ wrote for the run")
    reason: str = ""
    first_sequence: int = Field(default=0, ge=0, description="sequence of the run's first STF")


class DetectorEvent(_Payload):
    """An operational event that changes state: beam_on, good_for_physics_dropped, ..."""

    trigger: str
    reason: str = ""
    flavour: str | None = None


class StateChanged(_Payload):
    trigger: str
    from_state: str
    from_substate: str
    to_state: str
    to_substate: str
    flavour: str
    effect: str
    run_number: int | None = None
    reason: str = ""
    synchronised: bool = False  # the machine followed a reported state (no table transition)


class StfAvailable(_Payload):
    stf: SuperTimeFrame
    rse: str
    path: str
    first_sequence: int = Field(default=0, ge=0, description="sequence of the run's first STF")


class TfSampleAvailable(_Payload):
    sample: TFSample
    rse: str
    path: str


class StfNews(_Payload):
    """stf_registered / stf_archived / stf_rejected / stf_processed broadcasts."""

    filename: FileName
    run_number: int | None = None
    sequence: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class StfWork(_Payload):
    """archive_stf / process_stf work items."""

    filename: FileName
    run_number: int | None = None
    sequence: int
    site: str | None = None


class JobState(_Payload):
    job_id: int
    kind: str
    site: str
    status: str
    attempt: int
    filename: FileName | None = None
    error: str | None = None


class MergeDone(_Payload):
    run_number: int
    site: str
    output: FileName
    n_inputs: int
    final: bool = False


class ProcessingGate(_Payload):
    """processing_suspended / processing_resumed."""

    run_number: int | None = None
    reason: str
    backlog: int = 0


class IntegrityIssue(_Payload):
    kind: str
    filename: FileName | None = None
    run_number: int | None = None
    detail: str


class SliceWork(_Payload):
    """tf_slice: one TF slice for the fast path's workers (the testbed's ``slice``)."""

    slice_name: FileName
    run_number: int | None = None
    stf_filename: FileName
    sample_filename: FileName
    path: str
    first_tf: int = Field(ge=0)
    tf_count: int = Field(gt=0)
    kind: str = "monitoring"  # monitoring | detector_status
    express: bool = False
    available_at: AwareDatetime


class SliceResult(_Payload):
    """slice_result: what a worker computed for a slice, down to per-event quantities."""

    slice_name: FileName
    run_number: int | None = None
    worker: str
    status: str  # lifecycle.fastpath.SliceOutcome: completed | failed | retrying
    attempt: int = Field(ge=1)
    n_events: int = 0
    events: list[dict[str, Any]] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)
    processing_s: float | None = None
    latency_s: float | None = None
    error: str | None = None


class WorkerNews(_Payload):
    """worker_registered / worker_exited / worker_replaced: the standing pool's members."""

    worker: str
    run_number: int | None = None
    pid: int | None = None
    detail: str = ""


class WorkerBeat(_Payload):
    """worker_heartbeat: a pilot-job worker is alive (``busy``: slices in hand)."""

    worker: str
    run_number: int | None = None
    busy: int = Field(default=0, ge=0)


class SliceProcessed(_Payload):
    """slice_processed: what a pilot-job worker's payload answered for a slice, sent to the
    pool that keeps the store (the worker has no database): ``reply`` is the payload's."""

    worker: str
    work: SliceWork
    reply: dict[str, Any]
    started_at: AwareDatetime


class PoolCommand(_Payload):
    """pool_drain (every worker of the run) / worker_retire (the named ones): exit once the
    slice in hand is done."""

    run_number: int | None = None
    workers: list[str] = Field(default_factory=list)
    reason: str = ""


class PoolScaled(_Payload):
    """pool_scaled: an autoscaling decision of the fast-path pool."""

    run_number: int | None = None
    from_size: int = Field(ge=0)
    to_size: int = Field(ge=0)
    backlog: int = Field(ge=0)
    slice_s: float | None = None
    reason: str


class Alarm(_Payload):
    """alarm: raised by a slice result; published at once, before the STF is processed."""

    run_number: int | None = None
    slice_name: FileName
    stf_filename: FileName
    event: int | None = None
    kind: str
    value: float
    threshold: float
    detail: str = ""


PAYLOADS: dict[str, type[_Payload]] = {
    "run_imminent": RunImminent,
    "start_run": RunBoundary,
    "pause_run": RunBoundary,
    "resume_run": RunBoundary,
    "end_run": EndRun,
    "detector_event": DetectorEvent,
    "state_changed": StateChanged,
    "stf_available": StfAvailable,
    "tf_sample_available": TfSampleAvailable,
    "stf_registered": StfNews,
    "stf_archived": StfNews,
    "stf_rejected": StfNews,
    "stf_processed": StfNews,
    "archive_stf": StfWork,
    "process_stf": StfWork,
    "job_state": JobState,
    "merge_done": MergeDone,
    "processing_suspended": ProcessingGate,
    "processing_resumed": ProcessingGate,
    "integrity_issue": IntegrityIssue,
    "tf_slice": SliceWork,
    "slice_result": SliceResult,
    "worker_registered": WorkerNews,
    "worker_exited": WorkerNews,
    "worker_replaced": WorkerNews,
    "worker_heartbeat": WorkerBeat,
    "slice_processed": SliceProcessed,
    "pool_drain": PoolCommand,
    "worker_retire": PoolCommand,
    "pool_scaled": PoolScaled,
    "alarm": Alarm,
}


class Message(BaseModel):
    """A validated envelope plus its typed payload."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    envelope: Envelope
    body: _Payload

    @property
    def msg_type(self) -> str:
        return self.envelope.msg_type

    @property
    def msg_id(self) -> str:
        return self.envelope.msg_id


def encode(message: Message) -> str:
    data = message.envelope.model_dump(mode="json")
    data["payload"] = message.body.model_dump(mode="json")
    return json.dumps(data, sort_keys=True)


def _malformed(what: str, why: str) -> MalformedMessageError:
    return screening.malformed(what, why)


def decode(raw: str | bytes) -> Message:
    """Parse and validate a wire message, or raise MalformedMessageError saying what is wrong.
    Nothing else escapes: whatever a body holds, it is a message or a malformed one."""
    try:
        return _decode(raw)
    except MalformedMessageError:
        raise
    except Exception as error:
        raise _malformed("message cannot be decoded",
                         f"{type(error).__name__}: {str(error)[:300]}") from None


def _decode(raw: str | bytes) -> Message:
    data = screening.parse_body(raw)
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as error:
        raise _malformed("message envelope is invalid", describe_validation_error(error)) from error
    major = envelope.schema_version.split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise _malformed(
            f"schema version {envelope.schema_version} is not supported",
            f"this consumer reads major version {SCHEMA_VERSION.split('.')[0]}",
        )
    model = PAYLOADS.get(envelope.msg_type)
    if model is None:
        raise _malformed(
            f"unknown msg_type {envelope.msg_type!r}", f"known types: {', '.join(sorted(PAYLOADS))}"
        )
    try:
        body = model.model_validate(envelope.payload)
    except ValidationError as error:
        raise _malformed(
            f"payload of {envelope.msg_type} is invalid", describe_validation_error(error)
        ) from error
    return Message(envelope=envelope.model_copy(update={"payload": {}}), body=body)


class MessageFactory:
    """Builds envelopes for one producer, numbering messages per run (thread-safe)."""

    def __init__(self, producer: str) -> None:
        self.producer = producer
        self._seq: dict[int | None, int] = {}
        self._lock = threading.Lock()

    def make(
        self,
        msg_type: str,
        body: _Payload,
        *,
        run_number: int | None = None,
        state: str | None = None,
        substate: str | None = None,
    ) -> Message:
        if PAYLOADS.get(msg_type) is not type(body):
            raise ValueError(f"{msg_type} carries {PAYLOADS.get(msg_type)}, not {type(body)}")
        with self._lock:
            seq = self._seq.get(run_number, 0)
            self._seq[run_number] = seq + 1
        envelope = Envelope(
            schema_version=SCHEMA_VERSION,
            msg_id=uuid.uuid4().hex,
            msg_type=msg_type,
            producer=self.producer,
            run_number=run_number,
            seq=seq,
            created_at=datetime.now(UTC),
            state=state,
            substate=substate,
        )
        return Message(envelope=envelope, body=body)
