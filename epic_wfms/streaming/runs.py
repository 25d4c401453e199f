"""Run lifecycle on the data side: run records and their datasets (archival + E1 subsets)."""

from __future__ import annotations

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.ddm import DID
from epic_wfms.lifecycle.run import RUN_LIVE, RunStatus
from epic_wfms.model import naming
from epic_wfms.store.runs import ensure_run, get_run
from epic_wfms.streaming.context import StreamingContext


def run_datasets(ctx: StreamingContext, run_number: int) -> list[DID]:
    names = [naming.run_dataset(run_number)] + [
        naming.site_dataset(run_number, site.name) for site in ctx.config.sites
    ]
    return [DID(naming.SCOPE, name) for name in names]


def prepare_run(ctx: StreamingContext, run_number: int, **fields: object) -> None:
    """Idempotent: the run record and its open datasets exist afterwards."""
    ensure_run(ctx.db, run_number, **fields)
    for did in run_datasets(ctx, run_number):
        ctx.ddm.add_dataset(did, {"run_number": run_number})


class RunLifecycle:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx

    def subscribe(self) -> None:
        self.ctx.bus.subscribe(dest.RUN_CONTROL, "run-lifecycle", self.on_run_control)
        self.ctx.bus.subscribe(dest.STATE, "run-lifecycle-state", self.on_state_changed)

    def on_state_changed(self, message: m.Message) -> None:
        """A run also ends when the complex leaves the run state (beam lost, detector fault)."""
        change: m.StateChanged = message.body
        if change.effect == "closes" and change.run_number is not None:
            run = get_run(self.ctx.db, change.run_number)
            if run is not None and run.status in RUN_LIVE:
                ensure_run(self.ctx.db, change.run_number, status=RunStatus.CLOSED,
                           end_time=message.envelope.created_at)

    def on_run_control(self, message: m.Message) -> None:
        body, at = message.body, message.envelope.created_at
        if message.msg_type == "run_imminent":
            prepare_run(
                self.ctx, body.run_number, run_type=body.run_type.value,
                detector_config=body.detector_config, target_stfs=body.target_stfs,
            )
        elif message.msg_type == "start_run":
            prepare_run(self.ctx, body.run_number, status=RunStatus.OPEN, start_time=at)
        elif message.msg_type == "end_run":
            prepare_run(
                self.ctx, body.run_number, status=RunStatus.CLOSED, end_time=at,
                total_stfs=body.total_stfs, first_sequence=body.first_sequence or None,
            )
