"""``epic-wfms demo``: one ePIC streaming run, end to end, on the embedded backends."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from epic_wfms.backends import Backends, build_backends
from epic_wfms.config import Config
from epic_wfms.daq import DaqSettings, DaqSimulator
from epic_wfms.store.schema import RunRecord, StfRecord
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.orchestrator import Orchestrator
from epic_wfms.streaming.report import run_report


@dataclass
class DemoOptions:
    stfs: int = 50
    rate_hz: float = 5.0
    stf_size_bytes: int = 64 * 1024
    pre_run_stfs: int = 3
    standby: range | None = None
    timeout_s: float = 300.0


def next_run_number(backends: Backends) -> int:
    with backends.db.session() as session:
        return (session.scalar(select(func.max(RunRecord.number))) or 100) + 1


def _progress(backends: Backends, run: int, options: DemoOptions) -> Table:
    with backends.db.session() as session:
        rows = session.execute(select(
            func.count(StfRecord.registered_at),
            func.count(StfRecord.archived_at),
            func.count(StfRecord.processed_at),
        ).where(StfRecord.run_number == run)).one()
        status = session.scalar(select(RunRecord.status).where(RunRecord.number == run))
    table = Table(title=f"ePIC run {run} ({status or 'starting'})")
    for column in ("STFs", "registered", "archived", "processed"):
        table.add_column(column, justify="right")
    table.add_row(str(options.stfs), *(str(n) for n in rows))
    return table


def run_demo(config: Config, options: DemoOptions, console: Console | None) -> dict[str, Any]:
    backends = build_backends(config)
    ctx = StreamingContext(config, backends.db, backends.bus, backends.ddm, backends.executor)
    orchestrator = Orchestrator(ctx)
    orchestrator.start()
    run = next_run_number(backends)
    daq = DaqSimulator(
        backends.bus, config.data_dir / "rses" / config.daq_rse, config.daq_rse,
        DaqSettings(stf_size_bytes=options.stf_size_bytes, rate_hz=options.rate_hz),
    )
    produced_before = 0

    def control_room() -> None:
        nonlocal produced_before
        daq.bring_up()
        daq.stream_outside_run(options.pre_run_stfs)
        produced_before = len(daq.produced)
        daq.physics_run(run, options.stfs, standby=options.standby)

    started = time.monotonic()
    daq_thread = threading.Thread(target=control_room, name="daq", daemon=True)
    daq_thread.start()
    try:
        finished = _wait(orchestrator, backends, run, options, console)
        daq_thread.join()
        report = run_report(backends.db, backends.ddm, run, daq.produced[produced_before:])
        report["outside_run_stfs"] = produced_before
        report["finished"] = finished
        report["wall_time_s"] = round(time.monotonic() - started, 2)
        report["store"] = config.db_url
        return report
    finally:
        orchestrator.stop()
        backends.close()


def _wait(orchestrator: Orchestrator, backends: Backends, run: int, options: DemoOptions,
          console: Console | None) -> bool:
    if console is None:
        return orchestrator.wait_run_finished(run, options.timeout_s)
    deadline = time.monotonic() + options.timeout_s
    with Live(_progress(backends, run, options), console=console, refresh_per_second=4) as live:
        while time.monotonic() < deadline:
            if orchestrator.wait_run_finished(run, 0.25):
                live.update(_progress(backends, run, options))
                return True
            live.update(_progress(backends, run, options))
    return False
