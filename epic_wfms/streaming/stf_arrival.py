"""STFs announced before anyone measured them (the testbed's ``stf_gen``: no size, no
checksum): found in the DAQ buffer, measured, then announced to ingest as ``stf_available``.

An announced STF is kept in ``awaited_stfs`` until its file is there (registered at once, or
as soon as it appears) or ``testbed.file_grace_s`` has passed: then it is recorded as a
``missing`` STF and the run's one ``stf_file_missing`` integrity issue names it. Nothing is
dropped, and the list survives a restart of the ingest agent.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.testbed import TestbedStf, checked_stf, stf_announcement
from epic_wfms.errors import MalformedMessageError
from epic_wfms.lifecycle.stf import (
    AWAITED,
    ArchiveStatus,
    AwaitedStatus,
    ProcessingStatus,
    Validation,
)
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.testbed_time import zone
from epic_wfms.store.database import insert_ignoring_duplicates
from epic_wfms.store.integrity import report_or_update, resolve_issues
from epic_wfms.store.schema import AwaitedStfRecord, StfRecord, utcnow
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.runs import prepare_run

log = logging.getLogger(__name__)

MISSING = "stf_file_missing"


def locate(buffer: Path, template: str, fields: dict[str, str]) -> Path:
    """The STF file's path by the configured template, confined to the DAQ buffer: message
    fields are single path components, and the result must lie inside ``buffer``."""
    for name, value in fields.items():
        if not value or value in (".", "..") or any(c in value for c in "/\\\0"):
            raise MalformedMessageError(
                f"testbed {name} {value!r} cannot name a file in the DAQ buffer",
                "message fields become single path components (no '/', '..' or NUL)",
                "check the sender; the message is dead-lettered",
            )
    path = (buffer / template.format(**fields)).resolve()
    if not path.is_relative_to(buffer):
        raise MalformedMessageError(
            f"testbed STF path {path} is outside the DAQ buffer {buffer}",
            "STF files are read only from the DAQ buffer",
            "fix testbed.stf_path (docs/configuration.md#testbed)",
        )
    return path


class StfArrivals:
    def __init__(self, ctx: StreamingContext, factory: m.MessageFactory) -> None:
        self.ctx = ctx
        self.factory = factory
        self.tz = zone(ctx.config.testbed.timezone)
        self.grace = timedelta(seconds=ctx.config.testbed.file_grace_s)
        self._lock = threading.Lock()

    def announce(self, data: dict, stf: TestbedStf, path: Path) -> None:
        """Keep the announcement (a repeated one changes nothing), then look for its file."""
        with self.ctx.db.session() as session:
            session.execute(insert_ignoring_duplicates(session, AwaitedStfRecord), [{
                "filename": stf.filename, "run_number": stf.run_number,
                "sequence": stf.sequence, "path": str(path), "announcement": data,
                "announced_at": utcnow(), "status": AwaitedStatus.AWAITING,
            }])
        self.check([stf.filename])

    def tick(self) -> None:
        self.check()

    def check(self, filenames: list[str] | None = None) -> None:
        """Announce the STFs whose file is there; record those past the grace as missing."""
        with self._lock:
            with self.ctx.db.session() as session:
                query = select(AwaitedStfRecord).where(
                    AwaitedStfRecord.status == AwaitedStatus.AWAITING)
                if filenames is not None:
                    query = query.where(AwaitedStfRecord.filename.in_(filenames))
                rows = session.scalars(query).all()
            now = utcnow()
            arrived, missing = [], []
            for row in rows:
                path = Path(row.path)
                if path.is_file() and path.stat().st_size > 0:
                    arrived.append(row)
                elif now - row.announced_at > self.grace:
                    missing.append(row)
            if arrived:
                self._announce_arrived(arrived)
            if missing:
                self._record_missing(missing)

    def _announce_arrived(self, rows: list[AwaitedStfRecord]) -> None:
        outgoing, done = [], []
        for row in rows:
            path = Path(row.path)
            stf = stf_announcement(row.announcement, self.tz)
            try:
                body = checked_stf(stf, self.ctx.config.daq_rse, str(path),
                                   path.stat().st_size, file_adler32(path))
            except (MalformedMessageError, OSError) as error:
                body = json.dumps(row.announcement, sort_keys=True)
                self.ctx.bus.ledger.dead_letter("testbed-bridge", dest.TESTBED, body, str(error))
                done.append((row.filename, AwaitedStatus.REJECTED))
                continue
            outgoing.append((dest.STF_INGEST, self.factory.make(
                "stf_available", body, run_number=stf.run_number, state=stf.state,
                substate=stf.substate)))
            done.append((row.filename, AwaitedStatus.ARRIVED))
        self.ctx.bus.publish_many(outgoing)
        self._resolve(done)

    def _record_missing(self, rows: list[AwaitedStfRecord]) -> None:
        for run in sorted({row.run_number for row in rows}):
            prepare_run(self.ctx, run)
        with self.ctx.db.session() as session:
            for row in rows:
                stf = stf_announcement(row.announcement, self.tz)
                session.add(StfRecord(
                    filename=stf.filename, run_number=stf.run_number, sequence=stf.sequence,
                    first_tf_time=stf.start or stf.announced,
                    last_tf_time=stf.end or stf.announced, tf_count=1, size_bytes=0,
                    adler32="", state=stf.state, substate=stf.substate,
                    daq_metadata={**stf.metadata, "expected_at": row.path},
                    available_at=row.announced_at, validation=Validation.MISSING,
                    archive_status=ArchiveStatus.NOT_ARCHIVED,
                    processing_status=ProcessingStatus.REJECTED,
                ))
        self._resolve([(row.filename, AwaitedStatus.MISSING) for row in rows])
        for row in rows:  # accounted for: reported in the run's stf_file_missing instead
            resolve_issues(self.ctx.db, "sequence_gap", row.filename)
        for run in sorted({row.run_number for row in rows}):
            self._report(run)

    def _resolve(self, done: list[tuple[str, AwaitedStatus]]) -> None:
        with self.ctx.db.session() as session:
            for filename, status in done:
                row = session.get(AwaitedStfRecord, filename)
                row.status, row.resolved_at = AWAITED.check(row.status, status), utcnow()

    def _report(self, run: int) -> None:
        """One issue per run, its detail rewritten as more files go missing."""
        with self.ctx.db.session() as session:
            rows = session.scalars(select(AwaitedStfRecord).where(
                AwaitedStfRecord.run_number == run,
                AwaitedStfRecord.status == AwaitedStatus.MISSING,
            ).order_by(AwaitedStfRecord.sequence)).all()
        sequences = [r.sequence for r in rows]
        detail = (f"run {run}: {len(rows)} STF file(s) announced by the DAQ never appeared in "
                  f"the DAQ buffer within {self.grace.total_seconds():g} s: sequences "
                  f"{_ranges(sequences)}; looked for e.g. {rows[0].path} "
                  "(testbed.stf_path, docs/operations.md#connect-the-testbed)")
        log.warning("%s", detail)
        report_or_update(self.ctx.db, MISSING, detail, run_number=run)


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3, 5``."""
    out, start = [], None
    for i, value in enumerate(values):
        if start is None:
            start = value
        if i + 1 == len(values) or values[i + 1] != value + 1:
            out.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(out)
