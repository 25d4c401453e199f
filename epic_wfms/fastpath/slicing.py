"""TF sampling and slicing: which STFs' TF samples feed the fast path, cut into TF slices.

Selection: the state/substate the sample was captured in (``fastpath.select``, like the
processing gate) and a deterministic fraction of STF sequences (``sample_fraction``; 0.25
takes sequences 3, 7, 11, ...: evenly spread and the same after a restart). Each selected
sample gives an express detector-status slice over its first ``express_tfs`` TFs and
monitoring slices of ``slice_tfs`` TFs covering the whole sample.
"""

from __future__ import annotations

import logging
import math

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.config import FastPathConfig
from epic_wfms.fastpath.slices import add_slices
from epic_wfms.model.naming import parse_stf_filename
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.screening import daq_file

log = logging.getLogger(__name__)


def selected(config: FastPathConfig, state: str | None, substate: str | None) -> bool:
    keys = {f"{state}/{substate}", f"{state}/*"}
    return bool(keys & set(config.select))


def sampled(sequence: int, fraction: float) -> bool:
    """Deterministic, evenly spread: exactly ``fraction`` of any long run of sequences."""
    return math.floor((sequence + 1) * fraction) > math.floor(sequence * fraction)


def plan_slices(body: m.TfSampleAvailable, available_at, config: FastPathConfig
                ) -> list[m.SliceWork]:
    """The slices of one TF sample (names follow the testbed: ``<sample>_slice_NNN``)."""
    sample = body.sample
    stem = sample.filename.removesuffix(".tf")
    common = {"run_number": sample.run_number, "stf_filename": sample.stf_filename,
              "sample_filename": sample.filename, "path": body.path,
              "available_at": available_at}
    works = []
    if config.express_tfs:
        works.append(m.SliceWork(
            slice_name=f"{stem}_status", first_tf=sample.first_tf,
            tf_count=min(config.express_tfs, sample.tf_count), kind="detector_status",
            express=True, **common))
    for index, offset in enumerate(range(0, sample.tf_count, config.slice_tfs)):
        works.append(m.SliceWork(
            slice_name=f"{stem}_slice_{index:03d}", first_tf=sample.first_tf + offset,
            tf_count=min(config.slice_tfs, sample.tf_count - offset), **common))
    return works


def to_testbed_slice(work: m.SliceWork, slice_id: int) -> dict:
    """The testbed's ``slice`` message content for the same work (swf-testbed vocabulary)."""
    return {"run_id": work.run_number, "filename": work.stf_filename,
            "tf_filename": work.slice_name + ".tf", "slice_id": slice_id,
            "start": work.first_tf, "end": work.first_tf + work.tf_count - 1,
            "tf_count": work.tf_count, "state": "queued", "substate": "new"}


class Slicer:
    """Turns ``tf_sample_available`` into queued slices on the normal or express queue."""

    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self.config = ctx.config.fastpath
        self.on_slices: list = []  # callbacks(run_number) when slices were queued

    def subscribe(self) -> None:
        self.ctx.bus.subscribe(dest.TF_SAMPLES, "fastpath-slicer", self.on_tf_sample,
                               msg_types={"tf_sample_available"})

    def on_tf_sample(self, message: m.Message) -> None:
        body: m.TfSampleAvailable = message.body
        sample, envelope = body.sample, message.envelope
        daq_file(self.ctx.config, body.path, body.rse, f"tf_sample_available {sample.filename}")
        if sample.run_number is None or not selected(self.config, envelope.state,
                                                     envelope.substate):
            return
        _run, sequence = parse_stf_filename(sample.stf_filename)
        if not sampled(sequence, self.config.sample_fraction):
            return
        works = add_slices(self.ctx.db, plan_slices(body, envelope.created_at, self.config))
        for work in works:
            queue = dest.FASTPATH_EXPRESS if work.express else dest.FASTPATH_SLICES
            self.ctx.publish(queue, "tf_slice", work, work.run_number)
        for callback in self.on_slices:
            callback(sample.run_number)
