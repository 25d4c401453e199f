"""Ingest: validate each announced STF, record it, register it, then fan out archive and process.

Archive and process work go to separate queues consumed by separate workers, so a stalled
processing path can never delay registration or archiving (R4.7).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.config import GateAction
from epic_wfms.ddm import DID, FileSpec
from epic_wfms.errors import DataManagementError
from epic_wfms.lifecycle.stf import ArchiveStatus, ProcessingStatus, RejectionKind, Validation
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf import SuperTimeFrame
from epic_wfms.store.integrity import report_issue, report_sequence_gap, sequence_arrived
from epic_wfms.store.schema import StfRecord, utcnow
from epic_wfms.store.stfs import stfs_by_filename
from epic_wfms.streaming.activity import StreamActivity
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.decision_box import DecisionBox, record_routes, recorded_routes
from epic_wfms.streaming.gating import gate_action
from epic_wfms.streaming.late_data import reopen_datasets, reopen_ended
from epic_wfms.streaming.runs import prepare_run
from epic_wfms.streaming.screening import daq_file

log = logging.getLogger(__name__)

MAX_BATCH = 64  # STF announcements handled together when the DAQ is ahead of us
GATE_STATUS: dict[GateAction, ProcessingStatus] = {
    "process": ProcessingStatus.QUEUED, "defer": ProcessingStatus.DEFERRED,
    "archive_only": ProcessingStatus.NOT_REQUIRED,
}


class Rejection(NamedTuple):
    kind: RejectionKind
    problem: str


def validate_against_daq(stf: SuperTimeFrame, path: Path) -> Rejection | None:
    """Compare the file on the DAQ buffer with the DAQ's metadata; why it is rejected, or None."""
    try:
        size = path.stat().st_size
    except OSError as error:
        return Rejection(RejectionKind.UNREADABLE,
                         f"file not readable on the DAQ buffer: {error}")
    if size != stf.size_bytes:
        return Rejection(RejectionKind.SIZE_MISMATCH,
                         f"size mismatch: DAQ says {stf.size_bytes} B, file has {size} B")
    found = file_adler32(path)
    if found != stf.adler32:
        return Rejection(RejectionKind.CHECKSUM_MISMATCH,
                         f"checksum mismatch: DAQ says ad:{stf.adler32}, file has ad:{found}")
    return None


class Ingest:
    def __init__(
        self, ctx: StreamingContext, decision_box: DecisionBox, activity: StreamActivity
    ) -> None:
        self.ctx = ctx
        self.decision_box = decision_box
        self.activity = activity
        self._next_seq: dict[int, int] = {}
        self._prepared: set[int] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> None:
        self.ctx.bus.subscribe_batch(dest.STF_INGEST, "ingest", self.on_stfs_available,
                                     max_batch=MAX_BATCH)

    def on_stfs_available(self, messages: list[m.Message]) -> None:
        """A batch of announcements (whatever the DAQ sent meanwhile): bookkeeping in bulk,
        one DDM call, one insert, one pipelined publish, however many STFs arrived."""
        for message in messages:  # before any effect: a refused one is dead-lettered alone
            daq_file(self.ctx.config, message.body.path, message.body.rse,
                     f"stf_available {message.body.stf.filename}")
        with self.ctx.db.session() as session:
            known = stfs_by_filename(session, [msg.body.stf.filename for msg in messages])
        accepted: list[_Accepted] = []
        for message in messages:
            stf = message.body.stf
            first = known.get(stf.filename)
            if first is not None:
                self._on_duplicate(stf, first)
                continue
            known[stf.filename] = _as_record(stf, message)  # a repeat within this batch
            accepted.append(self._screen(message))
        self._route(accepted)
        valid = [a for a in accepted if a.problem is None]
        late = _by_run(valid)
        reopen_ended(self.ctx, late, late)  # an STF after its run was finalized: not refused
        datasets = self._register(valid)
        with self.ctx.db.session() as session:
            session.add_all(self._record(a) for a in accepted)
        reopen_ended(self.ctx, late, late)  # finalized while this batch was registered
        outgoing: list[tuple[str, m.Message]] = []
        for item in accepted:
            if item.problem:
                self._reject(item.stf, item.problem)
            else:
                outgoing += self._announcements(item, datasets[item.stf.filename])
        self.ctx.bus.publish_many(outgoing)

    def _screen(self, message: m.Message) -> _Accepted:
        """Sequence check, validation against the DAQ's metadata, decision box, gate."""
        body: m.StfAvailable = message.body
        stf = body.stf
        if stf.run_number is not None:
            self._prepare(stf.run_number, body.first_sequence)
            self._check_sequence(stf, body.first_sequence)
        self.activity.stf_seen(stf.run_number)
        problem = validate_against_daq(stf, Path(body.path))
        if problem:
            return _Accepted(message, [], "archive_only", problem)
        return _Accepted(message, [], "archive_only")

    def _route(self, accepted: list[_Accepted]) -> None:
        """The decision box routes the batch's valid run STFs on one look at the sites; the
        gate then decides what happens there (held STFs wait, deferred, for an E1)."""
        to_route = [a for a in accepted if a.problem is None and a.stf.run_number is not None]
        with self.ctx.db.session() as session:
            earlier = recorded_routes(session, [a.stf.filename for a in to_route])
        fresh = [a for a in to_route if a.stf.filename not in earlier]
        routes = dict(earlier)
        routes.update(zip([a.stf.filename for a in fresh],
                          self.decision_box.route_batch([a.stf for a in fresh]), strict=True))
        if fresh:  # decided once, recorded before any attachment in the DDM acts on it
            with self.ctx.db.session() as session:
                record_routes(session, [routes[a.stf.filename] for a in fresh])
        for item in to_route:
            route = routes[item.stf.filename]
            item.sites = route.sites
            item.action = self._gate(item.stf, route.sites)
            if route.deferred and item.action == "process":
                item.action = "defer"

    def _prepare(self, run_number: int, first_sequence: int) -> None:
        """Run record and datasets, once per run (the lifecycle may not have announced it)."""
        if run_number not in self._prepared:
            prepare_run(self.ctx, run_number, first_sequence=first_sequence or None)
            self._prepared.add(run_number)

    def _on_duplicate(self, stf: SuperTimeFrame, known: StfRecord) -> None:
        """Different content is reported (the first version is kept). Identical content is a
        redelivery after a crash: send again whatever may not have been sent (archive and
        process requests are idempotent at their consumers)."""
        if known.adler32 != stf.adler32 or known.size_bytes != stf.size_bytes:
            report_issue(
                self.ctx.db, "duplicate_conflict",
                f"{stf.filename} announced again with different content "
                f"(was {known.size_bytes} B ad:{known.adler32}, now {stf.size_bytes} B "
                f"ad:{stf.adler32}); the first version is kept",
                run_number=stf.run_number, filename=stf.filename,
            )
            return
        if known.validation != Validation.OK:
            return
        work = m.StfWork(filename=stf.filename, run_number=stf.run_number, sequence=stf.sequence,
                         site=known.site)
        if known.archive_status == ArchiveStatus.PENDING:
            self.ctx.publish(dest.ARCHIVE, "archive_stf", work, stf.run_number)
        if known.processing_status == ProcessingStatus.QUEUED:
            self.ctx.publish(dest.process_queue(known.site), "process_stf", work, stf.run_number)

    def _check_sequence(self, stf: SuperTimeFrame, first_sequence: int) -> None:
        run = stf.run_number
        with self._lock:
            if run not in self._next_seq:
                self._next_seq[run] = self._first_expected(run, first_sequence)
            expected = self._next_seq[run]
            self._next_seq[run] = max(expected, stf.sequence + 1)
        if stf.sequence < expected:
            sequence_arrived(self.ctx.db, run, stf.sequence)
        elif stf.sequence > expected:  # one issue for the whole gap, however long
            report_sequence_gap(self.ctx.db, run, expected, stf.sequence - 1, stf.sequence)

    def _first_expected(self, run: int, first_sequence: int) -> int:
        """Resume after a restart from what the store already has (the DAQ says where the
        run's sequences start: 0 for ours, 1 for the testbed's)."""
        with self.ctx.db.session() as session:
            seqs = session.scalars(select(StfRecord.sequence).where(StfRecord.run_number == run))
            return max(seqs, default=first_sequence - 1) + 1

    def _record(self, item: _Accepted) -> StfRecord:
        if item.problem:
            return _as_record(item.stf, item.message, validation=Validation.CORRUPT,
                              archive_status=ArchiveStatus.NOT_ARCHIVED,
                              processing_status=ProcessingStatus.REJECTED)
        return _as_record(item.stf, item.message, validation=Validation.OK,
                          registered_at=utcnow(), site=item.sites[0] if item.sites else None,
                          archive_status=ArchiveStatus.PENDING,
                          processing_status=GATE_STATUS[item.action])

    def _reject(self, stf: SuperTimeFrame, rejection: Rejection) -> None:
        kind, problem = rejection
        log.warning("rejecting %s: %s", stf.filename, problem)
        report_issue(self.ctx.db, kind, problem, run_number=stf.run_number, filename=stf.filename)
        self.ctx.publish(dest.EVENTS, "stf_rejected", m.StfNews(
            filename=stf.filename, run_number=stf.run_number, sequence=stf.sequence,
            detail={"problem": problem, "kind": kind.value},
        ), stf.run_number)

    def _register(self, items: list[_Accepted]) -> dict[str, list[DID]]:
        """File DIDs + replicas on the DAQ buffer, attached to the run's and the sites'
        datasets, for the whole batch in one DDM call. Returns each file's datasets."""
        files, attachments, datasets_of = [], defaultdict(list), {}
        for item in items:
            stf, body = item.stf, item.message.body
            did = DID(naming.SCOPE, stf.filename)
            files.append(FileSpec(
                did, body.rse, body.path, stf.size_bytes, stf.adler32,
                {"run_number": stf.run_number, "sequence": stf.sequence,
                 "state": stf.state.value, "substate": stf.substate, "tf_count": stf.tf_count,
                 "first_tf_time": stf.first_tf_time.isoformat(),
                 "last_tf_time": stf.last_tf_time.isoformat()},
            ))
            datasets = self._datasets(stf, item.sites, item.action)
            for dataset in datasets:
                attachments[dataset].append(did)
            datasets_of[stf.filename] = datasets
        if files:
            try:
                self.ctx.ddm.register_and_attach(files, dict(attachments))
            except DataManagementError:
                # a run's datasets closed by a finalization racing this batch: reopened
                # (late_data.py), then one more try; any other refusal goes to the bus
                runs = {item.stf.run_number for item in items} - {None}
                for run in runs:
                    reopen_datasets(self.ctx, run)
                self.ctx.ddm.register_and_attach(files, dict(attachments))
        return datasets_of

    def _datasets(self, stf: SuperTimeFrame, sites: list[str], action: GateAction
                  ) -> list[DID]:
        """The run's archival dataset, and the sites' processing datasets when the STF is to
        be processed (now or on catch-up): a site dataset is what its prompt task reads."""
        if stf.run_number is None:
            dataset = DID(naming.SCOPE, naming.stream_dataset(stf.state.value, _segment(stf)))
            self.ctx.ddm.add_dataset(dataset)
            return [dataset]
        processed_at = sites if action != "archive_only" else []
        return [DID(naming.SCOPE, naming.run_dataset(stf.run_number))] + [
            DID(naming.SCOPE, naming.site_dataset(stf.run_number, s)) for s in processed_at
        ]

    def _gate(self, stf: SuperTimeFrame, sites: list[str]) -> GateAction:
        if stf.run_number is None or not sites:
            return "archive_only"
        return gate_action(self.ctx.config.processing.gate, stf.state.value, stf.substate)

    def _announcements(
        self, item: _Accepted, datasets: list[DID]
    ) -> list[tuple[str, m.Message]]:
        """Archive and process requests go to separate queues: neither can block the other."""
        stf, run, sites = item.stf, item.stf.run_number, item.sites
        work = m.StfWork(filename=stf.filename, run_number=run, sequence=stf.sequence,
                         site=sites[0] if sites else None)
        out = [
            (dest.EVENTS, self.ctx.message("stf_registered", m.StfNews(
                filename=stf.filename, run_number=run, sequence=stf.sequence,
                detail={"datasets": [str(d) for d in datasets], "sites": sites,
                        "gate": item.action},
            ), run)),
            (dest.ARCHIVE, self.ctx.message("archive_stf", work, run)),
        ]
        if item.action == "process":
            out.append((dest.process_queue(sites[0]), self.ctx.message("process_stf", work, run)))
        return out


@dataclass
class _Accepted:
    """One new STF of a batch and what screening decided for it."""

    message: m.Message
    sites: list[str]
    action: GateAction
    problem: Rejection | None = None

    @property
    def stf(self) -> SuperTimeFrame:
        return self.message.body.stf


def _as_record(stf: SuperTimeFrame, message: m.Message, **status: object) -> StfRecord:
    return StfRecord(
        filename=stf.filename, run_number=stf.run_number, sequence=stf.sequence,
        first_tf_time=stf.first_tf_time, last_tf_time=stf.last_tf_time,
        tf_count=stf.tf_count, size_bytes=stf.size_bytes, adler32=stf.adler32,
        state=stf.state.value, substate=stf.substate, daq_metadata=stf.daq_metadata,
        available_at=message.envelope.created_at, **status,
    )


def _by_run(items: list[_Accepted]) -> dict[int, list[str]]:
    runs: dict[int, list[str]] = defaultdict(list)
    for item in items:
        if item.stf.run_number is not None:
            runs[item.stf.run_number].append(item.stf.filename)
    return runs


def _segment(stf: SuperTimeFrame) -> str:
    return str(stf.daq_metadata.get("segment", stf.first_tf_time.strftime("%Y%m%dT%H%M%S")))
