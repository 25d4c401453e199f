"""Bookkeeping of TF samples (the fine-grained stream for fast monitoring, R3.8/R3.12)."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.store.schema import TfSampleRecord
from epic_wfms.streaming.context import StreamingContext


class TfSampleBook:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx

    def subscribe(self) -> None:
        self.ctx.bus.subscribe(dest.TF_SAMPLES, "tf-sample-book", self.on_tf_sample)

    def on_tf_sample(self, message: m.Message) -> None:
        body: m.TfSampleAvailable = message.body
        sample = body.sample
        with self.ctx.db.session() as session:
            if session.scalar(
                select(TfSampleRecord.id).where(TfSampleRecord.filename == sample.filename)
            ):
                return
            session.add(TfSampleRecord(
                filename=sample.filename, stf_filename=sample.stf_filename,
                run_number=sample.run_number, sample_index=sample.index,
                first_tf=sample.first_tf, tf_count=sample.tf_count,
                size_bytes=sample.size_bytes, adler32=sample.adler32, path=body.path,
            ))
