"""Bookkeeping of TF samples (the fine-grained stream for fast monitoring, R3.8/R3.12)."""

from __future__ import annotations

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.store.database import insert_ignoring_duplicates
from epic_wfms.store.schema import TfSampleRecord
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.screening import daq_file

MAX_BATCH = 64  # several samples per STF: recorded together when they arrive together


class TfSampleBook:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx

    def subscribe(self) -> None:
        self.ctx.bus.subscribe_batch(dest.TF_SAMPLES, "tf-sample-book", self.on_tf_samples,
                                     max_batch=MAX_BATCH)

    def on_tf_samples(self, messages: list[m.Message]) -> None:
        """One insert for the batch; a sample already recorded (redelivery) is left as is."""
        for message in messages:  # before any effect: a refused one is dead-lettered alone
            daq_file(self.ctx.config, message.body.path, message.body.rse,
                     f"tf_sample_available {message.body.sample.filename}")
        rows = []
        for message in messages:
            body: m.TfSampleAvailable = message.body
            sample = body.sample
            rows.append({
                "filename": sample.filename, "stf_filename": sample.stf_filename,
                "run_number": sample.run_number, "sample_index": sample.index,
                "first_tf": sample.first_tf, "tf_count": sample.tf_count,
                "size_bytes": sample.size_bytes, "adler32": sample.adler32, "path": body.path,
            })
        with self.ctx.db.session() as session:
            session.execute(insert_ignoring_duplicates(session, TfSampleRecord), rows)
