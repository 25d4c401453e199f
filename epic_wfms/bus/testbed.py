"""Adapter for the ePIC streaming-workflow testbed's messages (swf-testbed, /topic/epictopic).

The testbed sends flat JSON: ``msg_type, namespace, sender, execution_id, run_id, timestamp,
state, substate`` plus, for ``stf_gen``, ``filename, sequence, start, end, checksum`` (``ad:``)
and ``size``. It has no message id, ordering or version; we give each one an envelope (id,
per-run seq from our factory) and map it to our schema, so its DAQ simulator can drive us.
The testbed sends no file path: STFs are looked up by file name in the DAQ buffer directory.
``end_run`` may carry ``total_files`` (the number of STFs written), used for the completeness
check; the testbed's own ``timestamp`` is kept in the STF's DAQ metadata.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.bus import MessageBus
from epic_wfms.errors import InvalidRecordError, MalformedMessageError
from epic_wfms.model.naming import stf_filename
from epic_wfms.model.stf import TF_DURATION_S, SuperTimeFrame
from epic_wfms.model.validation import describe_validation_error

TESTBED_TYPES = ("run_imminent", "start_run", "pause_run", "resume_run", "end_run", "stf_gen")


def _time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _require(data: dict[str, Any], *fields: str) -> None:
    missing = [f for f in fields if f not in data or data[f] in (None, "")]
    if missing:
        raise MalformedMessageError(
            f"testbed {data.get('msg_type')} message lacks {', '.join(missing)}",
            "the testbed's message format requires these fields",
            "send the fields documented in docs/messages.md#testbed",
        )


def _stf_available(data: dict[str, Any], daq_rse: str, buffer: Path) -> m.StfAvailable:
    _require(data, "filename", "sequence", "start", "end", "checksum", "size", "run_id")
    start, end = _time(data["start"]), _time(data["end"])
    run = int(data["run_id"])
    filename = str(data["filename"])
    metadata = {k: data[k] for k in ("namespace", "execution_id", "sender") if k in data}
    if "timestamp" in data:
        metadata["testbed_timestamp"] = str(data["timestamp"])
    if filename != stf_filename(run, int(data["sequence"])):
        metadata["testbed_filename"] = filename  # testbed names carry date and state instead
    stf = SuperTimeFrame(
        run_number=run,
        sequence=int(data["sequence"]),
        filename=stf_filename(run, int(data["sequence"])),
        first_tf_time=start,
        last_tf_time=end,
        tf_count=max(1, round((end - start).total_seconds() / TF_DURATION_S)),
        size_bytes=int(data["size"]),
        adler32=str(data["checksum"]),
        state=data.get("state") or "run",
        substate=data.get("substate") or "physics",
        daq_metadata=metadata,
    )
    return m.StfAvailable(stf=stf, rse=daq_rse, path=str(data.get("path") or buffer / filename))


def _payload(data: dict[str, Any], daq_rse: str, buffer: Path) -> tuple[str, m._Payload]:
    kind = data.get("msg_type")
    if kind not in TESTBED_TYPES:
        raise MalformedMessageError(
            f"testbed msg_type {kind!r} is not understood",
            f"the adapter accepts {', '.join(TESTBED_TYPES)}",
            "send one of these or use our own schema (docs/messages.md)",
        )
    _require(data, "run_id")
    run = int(data["run_id"])
    if kind == "stf_gen":
        return "stf_available", _stf_available(data, daq_rse, buffer)
    if kind == "run_imminent":
        return kind, m.RunImminent(
            run_number=run,
            detector_config=str(data.get("detector_config", "epic-default")),
            target_stfs=data.get("target_stfs"),
        )
    if kind == "end_run":
        return kind, m.EndRun(run_number=run, total_stfs=int(data.get("total_files", 0)))
    return kind, m.RunBoundary(run_number=run, reason=str(data.get("reason", "")))


def from_testbed(
    raw: str | bytes | dict[str, Any], factory: m.MessageFactory, daq_rse: str,
    buffer: Path = Path("."),
) -> m.Message:
    """Map one testbed message to ours, or raise MalformedMessageError saying what is missing."""
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except json.JSONDecodeError as error:
        raise MalformedMessageError("testbed message is not JSON", str(error)) from error
    if not isinstance(data, dict):
        raise MalformedMessageError(
            "testbed message is not a JSON object", f"got {type(data).__name__}",
            "send one JSON object per message",
        )
    try:
        msg_type, body = _payload(data, daq_rse, buffer)
    except (ValidationError, InvalidRecordError, ValueError, TypeError) as error:
        why = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
        raise MalformedMessageError(
            f"testbed {data.get('msg_type')} message is invalid", why,
            "check the fields against docs/messages.md#testbed",
        ) from error
    return factory.make(
        msg_type, body, run_number=int(data["run_id"]),
        state=data.get("state"), substate=data.get("substate"),
    )


class TestbedBridge:
    """Listens on the testbed's topic and re-publishes its messages in our schema.

    Run control goes to the run-control topic, STFs to the ingest queue; a message the adapter
    cannot map is dead-lettered with the reason (nothing is dropped).
    """

    def __init__(self, bus: MessageBus, daq_rse: str, buffer: Path) -> None:
        self.bus = bus
        self.daq_rse = daq_rse
        self.buffer = buffer
        self.factory = m.MessageFactory("testbed-bridge")

    def subscribe(self) -> None:
        self.bus.transport.subscribe(dest.TESTBED, "testbed-bridge", self.on_raw)

    def on_raw(self, body: str) -> None:
        try:
            message = from_testbed(body, self.factory, self.daq_rse, self.buffer)
        except MalformedMessageError as error:
            self.bus.ledger.dead_letter("testbed-bridge", dest.TESTBED, body, str(error))
            return
        target = dest.STF_INGEST if message.msg_type == "stf_available" else dest.RUN_CONTROL
        self.bus.publish(target, message)
