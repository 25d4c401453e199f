"""E0 DAQ simulator: writes real STF files and TF samples to the DAQ buffer and announces them.

It plays the run control too: detector events and run-lifecycle messages go to the run-control
topic, STFs to the ingest queue, TF samples to the sample topic. It is "always on" (R3.2):
``stream()`` keeps producing outside runs, with the state/substate in effect stamped on each STF.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from epic_wfms.bus import MessageBus, MessageFactory
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.detector import DataFlavour, DetectorState
from epic_wfms.model.run import RunType
from epic_wfms.model.stf import TF_DURATION_S, SuperTimeFrame, TFSample
from epic_wfms.model.stf_file import hits_per_tf_for, write_stf, write_tf_sample
from epic_wfms.statemachine.table import ALLOWED_FLAVOURS

ANNOUNCE_BATCH = 16  # STFs announced together when the DAQ runs at full speed (rate 0)


@dataclass
class DaqSettings:
    stf_size_bytes: int = 64 * 1024  # real STFs are ~2 GB; small by default for the demo
    tfs_per_stf: int = 100
    rate_hz: float = 5.0
    tf_sample_size: int = 10  # TFs copied into each STF's TF sample (0: no samples)
    detector_config: str = "epic-2026-default"
    seed: int = 1
    corrupt_sequences: set[int] = field(default_factory=set)  # announce a wrong checksum
    skip_sequences: set[int] = field(default_factory=set)  # never announce (a sequence gap)
    anomalous_tfs: dict[int, set[int]] = field(default_factory=dict)  # sequence -> saturated TFs


class DaqSimulator:
    def __init__(
        self, bus: MessageBus, buffer_dir: Path, rse: str, settings: DaqSettings | None = None
    ) -> None:
        self.bus = bus
        self.buffer_dir = buffer_dir
        self.rse = rse
        self.settings = settings or DaqSettings()
        self.factory = MessageFactory("epic-daq.e0")
        self.state, self.substate, self.flavour = "off", "not_ready", "daq"
        self.produced: list[str] = []
        self._segment = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._stream_seq = 0
        self._outbox: list[tuple[str, m.Message]] = []
        self._held = 0  # STFs in the outbox
        self._t0 = time.monotonic()  # start of the current paced sequence
        buffer_dir.mkdir(parents=True, exist_ok=True)

    # -- run control --------------------------------------------------------------------------
    def _message(self, msg_type: str, body: m._Payload, run: int | None) -> m.Message:
        return self.factory.make(
            msg_type, body, run_number=run, state=self.state, substate=self.substate
        )

    def _send(self, destination: str, msg_type: str, body: m._Payload, run: int | None) -> None:
        self.flush()  # STFs held back are announced before any run-control message
        self.bus.publish(destination, self._message(msg_type, body, run))

    def flush(self) -> None:
        """Announce the STFs held back, in one round trip to the broker."""
        if self._outbox:
            self.bus.publish_many(self._outbox)
            self._outbox, self._held = [], 0

    def holds(self, index: int, last: bool) -> bool:
        """Whether the ``index``-th STF's announcement waits for the next flush: at full speed
        (rate 0) they go out ANNOUNCE_BATCH at a time; paced, each goes out as soon as it is
        written, unless the DAQ is behind its schedule (the next STF is already due): then up
        to ANNOUNCE_BATCH go out together, so the broker's round trip does not set the rate."""
        if last or self._held + 1 >= ANNOUNCE_BATCH:
            return False
        if self.settings.rate_hz <= 0:
            return True
        return time.monotonic() >= self._t0 + (index + 1) / self.settings.rate_hz

    def event(self, trigger: str, state: str, substate: str, reason: str = "") -> None:
        """A detector event (beam_on, detector_ready, good_for_physics_dropped, ...)."""
        self.state, self.substate = state, substate
        if self.flavour not in ALLOWED_FLAVOURS[DetectorState(state)]:
            self.flavour = DataFlavour.DAQ.value  # e.g. no luminosity data without beam
        self._send(dest.RUN_CONTROL, "detector_event", m.DetectorEvent(
            trigger=trigger, reason=reason, flavour=self.flavour
        ), None)

    def run_imminent(self, run: int, run_type: RunType = RunType.PHYSICS, target: int | None = None
                     ) -> None:
        self._send(dest.RUN_CONTROL, "run_imminent", m.RunImminent(
            run_number=run, run_type=run_type, detector_config=self.settings.detector_config,
            target_stfs=target,
        ), run)

    def start_run(self, run: int) -> None:
        self.state, self.substate = "run", "physics"
        self._send(dest.RUN_CONTROL, "start_run", m.RunBoundary(run_number=run), run)

    def pause_run(self, run: int, reason: str = "run control pause") -> None:
        self.substate = "standby"
        self._send(dest.RUN_CONTROL, "pause_run", m.RunBoundary(run_number=run, reason=reason), run)

    def resume_run(self, run: int, reason: str = "run control resume") -> None:
        self.substate = "physics"
        self._send(dest.RUN_CONTROL, "resume_run", m.RunBoundary(run_number=run, reason=reason),
                   run)

    def end_run(self, run: int, total_stfs: int) -> None:
        self.state, self.substate = "beam", "ready"
        self._send(dest.RUN_CONTROL, "end_run", m.EndRun(run_number=run, total_stfs=total_stfs),
                   run)

    # -- data -------------------------------------------------------------------------------------
    def write_stf(self, run: int | None, sequence: int, start: datetime,
                  hold: bool = False) -> SuperTimeFrame:
        """Write one STF (and its TF sample) to the buffer; announce it unless told to skip
        (``hold``: with the next ``flush``)."""
        s = self.settings
        if run is None:
            name = naming.stream_stf_filename(self.state, self._segment, sequence)
        else:
            name = naming.stf_filename(run, sequence)
        path = self.buffer_dir / name
        header = {"run_number": run, "sequence": sequence, "state": self.state,
                  "substate": self.substate, "detector_config": s.detector_config}
        # content depends only on (seed, name): a restarted DAQ rewrites identical bytes
        rng = random.Random(f"{s.seed}:{name}")
        write_stf(path, header, s.tfs_per_stf, hits_per_tf_for(s.stf_size_bytes, s.tfs_per_stf),
                  rng, frozenset(s.anomalous_tfs.get(sequence, ())))
        checksum = file_adler32(path)
        if sequence in s.corrupt_sequences:
            checksum = f"{(int(checksum, 16) ^ 0x5A5A) & 0xFFFFFFFF:08x}"
        stf = SuperTimeFrame(
            run_number=run, sequence=sequence, filename=name, first_tf_time=start,
            last_tf_time=start + timedelta(seconds=TF_DURATION_S * s.tfs_per_stf),
            tf_count=s.tfs_per_stf, size_bytes=path.stat().st_size, adler32=checksum,
            state=self.state, substate=self.substate,
            daq_metadata={"flavour": self.flavour, "segment": self._segment,
                          "detector_config": s.detector_config},
        )
        self.produced.append(name)
        if sequence in s.skip_sequences:
            return stf
        outgoing = [(dest.STF_INGEST, self._message("stf_available", m.StfAvailable(
            stf=stf, rse=self.rse, path=str(path)), run))]
        if s.tf_sample_size:
            outgoing.append(self._write_sample(stf, path))
        self._outbox += outgoing  # the STF and its sample go in one round trip
        self._held += 1
        if not hold:
            self.flush()
        return stf

    def _write_sample(self, stf: SuperTimeFrame, stf_path: Path) -> tuple[str, m.Message]:
        name = naming.tf_sample_filename(stf.filename, 0)
        path = self.buffer_dir / name
        count = min(self.settings.tf_sample_size, stf.tf_count)
        write_tf_sample(stf_path, path, 0, count, {"stf": stf.filename})
        sample = TFSample(
            stf_filename=stf.filename, run_number=stf.run_number, index=0, filename=name,
            first_tf=0, tf_count=count, size_bytes=path.stat().st_size,
            adler32=file_adler32(path),
        )
        return dest.TF_SAMPLES, self._message("tf_sample_available", m.TfSampleAvailable(
            sample=sample, rse=self.rse, path=str(path)), stf.run_number)

    def restore(self, state: str, substate: str, flavour: str) -> None:
        """Resume with the state a previous incarnation left (a restarted DAQ agent)."""
        self.state, self.substate, self.flavour = state, substate, flavour

    def paced(self, sequences: Iterable[int]) -> Iterator[tuple[int, int]]:
        """Yield (sequence, index) when each STF is due at the configured rate."""
        t0 = self._t0 = time.monotonic()
        for index, sequence in enumerate(sequences):
            self._pace(t0, index)
            yield sequence, index

    def stream(self, run: int | None, sequences: Iterable[int],
               stop: threading.Event | None = None) -> None:
        """Produce STFs at the configured rate, paced against the wall clock."""
        for sequence, _ in self.paced(sequences):
            if stop is not None and stop.is_set():
                return
            self.write_stf(run, sequence, datetime.now(UTC))

    def _pace(self, t0: float, index: int) -> None:
        """Sleep until the ``index``-th STF is due at the configured rate."""
        if self.settings.rate_hz > 0:
            delay = t0 + index / self.settings.rate_hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stream_outside_run(self, count: int) -> None:
        """Always-on streaming while no run is open (beam, lumi and DAQ information)."""
        start = self._stream_seq
        self._stream_seq += count
        self.stream(None, range(start, start + count))

    # -- a whole run, as the control room would do it ------------------------------------------
    def bring_up(self) -> None:
        self.event("systems_on", "no_beam", "not_ready", "DAQ and detector systems on")
        self.flavour = "lumi"
        self.event("beam_on", "beam", "not_ready", "collider delivers beam")
        self.event("detector_ready", "beam", "ready", "shift leader declares detector ready")

    def shut_down(self) -> None:
        """End of the fill: beam dumped, systems off; the next session starts from ``off``."""
        self.event("beam_lost", "no_beam", "not_ready", "end of fill: beam dumped")
        self.event("systems_off", "off", "not_ready", "detector systems off")

    def physics_run(self, run: int, n_stfs: int, standby: range | None = None,
                    announced: bool = False) -> None:
        """run_imminent (unless ``announced`` already), start_run, stream (optionally
        pausing), end_run."""
        if not announced:
            self.run_imminent(run, target=n_stfs)
        self.start_run(run)
        self.flavour = "epic"
        for sequence, index in self.paced(range(n_stfs)):
            if standby is not None and sequence == standby.start:
                self.pause_run(run)
            if standby is not None and sequence == standby.stop:
                self.resume_run(run)
            self.write_stf(run, sequence, datetime.now(UTC),
                           hold=self.holds(index, sequence == n_stfs - 1))
        self.end_run(run, n_stfs)
        self.flavour = "lumi"
