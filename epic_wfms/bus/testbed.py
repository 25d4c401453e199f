"""Reading the ePIC streaming testbed's messages (swf-testbed, on ``/topic/epictopic``).

The testbed's code is the specification (docs/messages.md#testbed): its workflow runner
(``stf_datataking``, ``prompt_processing``) sends flat JSON through swf-common-lib's
``BaseAgent.send_message``, which adds ``sender`` and ``namespace``:

- run control ``run_imminent``, ``start_run``, ``pause_run``, ``resume_run``, ``end_run``
  with ``run_id`` (a string), ``execution_id``, ``timestamp`` (ISO 8601 local time without a
  zone), ``simulation_tick`` and, except ``end_run``, the ``state``/``substate`` in effect;
  ``end_run`` carries ``total_stf_files``; ``run_imminent`` of ``prompt_processing`` adds
  ``dataset`` and ``container`` (where its STF files go);
- ``stf_gen`` with ``filename`` and ``sequence`` (counted from 1), no size, checksum or TF
  times: the file is found in the DAQ buffer and measured on arrival (streaming/stf_arrival).

Every other ``msg_type`` on the topic is addressed to the testbed's own agents (``stf_ready``,
``tf_file_registered``, ``fastmon_status``, ``processing_complete``, ...) and is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from pydantic import ValidationError

from epic_wfms.bus import messages as m
from epic_wfms.errors import InvalidRecordError, MalformedMessageError
from epic_wfms.model.naming import stf_filename
from epic_wfms.model.stf import TF_DURATION_S, SuperTimeFrame
from epic_wfms.model.testbed_time import testbed_time
from epic_wfms.model.validation import describe_validation_error

RUN_CONTROL_TYPES = ("run_imminent", "start_run", "pause_run", "resume_run", "end_run")
STF_TYPE = "stf_gen"
FIRST_SEQUENCE = 1  # the testbed's workflows count STFs from 1 (stf_sequence += 1, then send)
_KEPT = ("namespace", "execution_id", "sender", "run_id", "simulation_tick")


class Ignored(Exception):
    """A testbed message that is deliberately not followed (another namespace, another
    agent's message); not an error, not a dead letter."""


@dataclass(frozen=True)
class TestbedStf:
    """One ``stf_gen``: what the testbed says about an STF before its file is looked at."""

    run_number: int
    run_id: str  # as the testbed wrote it (used in its file layout)
    sequence: int
    testbed_filename: str
    state: str
    substate: str
    announced: datetime  # the testbed's timestamp, in the configured zone
    start: datetime | None = None
    end: datetime | None = None
    checksum: str | None = None  # the DAQ's, when a sender provides one
    size: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return stf_filename(self.run_number, self.sequence)

    def available(self, rse: str, path: str, size: int, adler32: str) -> m.StfAvailable:
        """The announcement for ingest, once the file is there (size and adler32 measured
        here unless the sender gave its own, which ingest then checks against the file)."""
        first = self.start or self.announced
        last = self.end or self.announced
        ours = self.checksum is None or self.size is None
        metadata = dict(self.metadata)
        if ours:
            metadata["size_and_adler32"] = "measured by epic-wfms on arrival (the DAQ sent none)"
        stf = SuperTimeFrame(
            run_number=self.run_number, sequence=self.sequence, filename=self.filename,
            first_tf_time=first, last_tf_time=max(first, last),
            tf_count=max(1, round((last - first).total_seconds() / TF_DURATION_S)),
            size_bytes=size if ours else self.size, adler32=adler32 if ours else self.checksum,
            state=self.state, substate=self.substate, daq_metadata=metadata,
        )
        return m.StfAvailable(stf=stf, rse=rse, path=path, first_sequence=FIRST_SEQUENCE)


def parse(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedMessageError("testbed message is not JSON", str(error)) from error
    if not isinstance(data, dict) or not isinstance(data.get("msg_type"), str):
        raise MalformedMessageError(
            "testbed message is not a JSON object with a msg_type",
            f"got {type(data).__name__}", "send one JSON object with msg_type per message",
        )
    return data


def check_followed(data: dict[str, Any], namespace: str) -> None:
    """Raise Ignored unless the message is one this installation follows: its namespace
    (none when ``namespace`` is empty) and a DAQ message type."""
    theirs = data.get("namespace") or ""
    if theirs != namespace:
        raise Ignored(f"namespace {theirs or '(none)'!r} is not ours ({namespace or '(none)'!r})")
    if data["msg_type"] not in (*RUN_CONTROL_TYPES, STF_TYPE):
        raise Ignored(f"{data['msg_type']!r} is addressed to the testbed's agents")


def run_number(data: dict[str, Any]) -> int:
    value = data.get("run_id")
    if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise MalformedMessageError(
            f"testbed {data['msg_type']} message has no usable run_id ({value!r})",
            "run_id must be a run number (the testbed sends it as a string of digits)",
            "check the sender; the message is dead-lettered",
        )
    return int(value)


def run_control(data: dict[str, Any], factory: m.MessageFactory) -> m.Message:
    """A run-control message in our schema, carrying the state the testbed reports."""
    run = run_number(data)
    kind = data["msg_type"]
    reported = {"reported_state": data.get("state") or None,
                "reported_substate": data.get("substate") or None}
    reason = str(data.get("reason") or "")
    try:
        if kind == "run_imminent":
            body: m._Payload = m.RunImminent(run_number=run, **reported)
        elif kind == "end_run":
            total = data.get("total_stf_files", data.get("total_files"))
            if total is None:
                raise MalformedMessageError(
                    "testbed end_run lacks total_stf_files",
                    "the run's completeness cannot be checked without it",
                    "check the sender; the message is dead-lettered",
                )
            body = m.EndRun(run_number=run, total_stfs=int(total), reason=reason,
                            first_sequence=FIRST_SEQUENCE, **reported)
        else:
            body = m.RunBoundary(run_number=run, reason=reason, **reported)
    except (ValidationError, ValueError, TypeError) as error:
        raise _invalid(data, error) from error
    return factory.make(kind, body, run_number=run, state=reported["reported_state"],
                        substate=reported["reported_substate"])


def stf_announcement(data: dict[str, Any], tz: tzinfo) -> TestbedStf:
    """What an ``stf_gen`` says; its file is looked for separately."""
    run = run_number(data)
    missing = [f for f in ("filename", "sequence", "timestamp") if data.get(f) in (None, "")]
    if missing:
        raise MalformedMessageError(
            f"testbed stf_gen message lacks {', '.join(missing)}",
            "an STF is named by its file name and sequence, and dated by its timestamp",
            "check the sender; the message is dead-lettered",
        )
    try:
        metadata = {k: data[k] for k in _KEPT if k in data}
        metadata["testbed_timestamp"] = str(data["timestamp"])
        sequence = int(data["sequence"])
        if str(data["filename"]) != stf_filename(run, sequence):
            metadata["testbed_filename"] = str(data["filename"])
        return TestbedStf(
            run_number=run, run_id=str(data["run_id"]), sequence=sequence,
            testbed_filename=str(data["filename"]),
            state=str(data.get("state") or "run"), substate=str(data.get("substate") or "physics"),
            announced=testbed_time(data["timestamp"], tz),
            start=testbed_time(data["start"], tz) if data.get("start") else None,
            end=testbed_time(data["end"], tz) if data.get("end") else None,
            checksum=str(data["checksum"]) if data.get("checksum") else None,
            size=int(data["size"]) if data.get("size") else None,
            metadata=metadata,
        )
    except (ValueError, TypeError) as error:
        raise _invalid(data, error) from error


def _invalid(data: dict[str, Any], error: Exception) -> MalformedMessageError:
    why = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
    return MalformedMessageError(
        f"testbed {data.get('msg_type')} message is invalid", why,
        "check the fields against docs/messages.md#testbed",
    )


def checked_stf(stf: TestbedStf, rse: str, path: str, size: int, adler32: str) -> m.StfAvailable:
    """``stf.available`` with its validation errors as MalformedMessageError."""
    try:
        return stf.available(rse, path, size, adler32)
    except (ValidationError, InvalidRecordError, ValueError) as error:
        raise MalformedMessageError(
            f"testbed STF {stf.testbed_filename} is invalid",
            describe_validation_error(error) if isinstance(error, ValidationError) else str(error),
            "check the fields against docs/messages.md#testbed",
        ) from error
