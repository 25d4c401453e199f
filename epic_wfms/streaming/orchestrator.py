"""The STF orchestrator: wires ingest, archiving, processing, merging and state tracking."""

from __future__ import annotations

import threading
import time

from epic_wfms.bus.testbed import TestbedBridge
from epic_wfms.store.runs import get_run
from epic_wfms.streaming.activity import StreamActivity
from epic_wfms.streaming.archiving import Archiver
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.decision_box import DecisionBox
from epic_wfms.streaming.ingest import Ingest
from epic_wfms.streaming.merging import Merging
from epic_wfms.streaming.processing import StfProcessing
from epic_wfms.streaming.runs import RunLifecycle
from epic_wfms.streaming.state_tracking import StateTracker
from epic_wfms.streaming.tf_samples import TfSampleBook

TICK_S = 0.25


class Orchestrator:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        sites = [site.name for site in ctx.config.sites]
        self.decision_box = DecisionBox(ctx.config.decision_box, sites, ctx.executor.backlog)
        self.activity = StreamActivity(ctx)
        self.state = StateTracker(ctx)
        self.runs = RunLifecycle(ctx)
        self.ingest = Ingest(ctx, self.decision_box, self.activity)
        self.archiver = Archiver(ctx)
        self.merging = Merging(ctx, self._dispatch_deferred)
        self.processing = StfProcessing(ctx, self.merging.stf_processed)
        self.tf_samples = TfSampleBook(ctx)
        buffer = ctx.config.data_dir / "rses" / ctx.config.daq_rse
        self.testbed = TestbedBridge(ctx.bus, ctx.config.daq_rse, buffer.resolve())
        ctx.executor.add_start_listener(self.processing.job_started)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="orchestrator-tick", daemon=True)

    def _dispatch_deferred(self, run_number: int) -> int:
        return self.processing.dispatch_deferred(run_number)

    def start(self) -> None:
        for component in (
            self.state, self.runs, self.ingest, self.archiver, self.processing, self.tf_samples,
            self.testbed,
        ):
            component.subscribe()
        self._ticker.start()

    def _tick(self) -> None:
        """Periodic duties: idle-stream suspension and end-of-run finalization."""
        while not self._stop.wait(TICK_S):
            self.activity.check_idle()
            for run_number in self.merging.open_runs():
                self.merging.try_finalize(run_number)

    def wait_run_finished(self, run_number: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = get_run(self.ctx.db, run_number)
            if run is not None and run.status == "finished":
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
