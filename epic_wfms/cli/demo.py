"""``epic-wfms demo``: one ePIC streaming run, end to end.

``--backend embedded`` (default): everything in this process (SQLite, in-process bus).
``--backend services``: the agents run as separate processes talking through the STOMP broker
and PostgreSQL; the demo starts them, plays the DAQ as its own agent, and stops them.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select

from epic_wfms.bus import MessageBus
from epic_wfms.cli.services import SERVICE_ROLES, AgentSet, write_config
from epic_wfms.config import POSTGRES_DEFAULT_URL, Config
from epic_wfms.daq import DaqSettings
from epic_wfms.fastpath.results import fastpath_report, wait_fastpath_drained
from epic_wfms.installation import Installation, build_ddm, open_database
from epic_wfms.lifecycle.job import JobKind, JobStatus
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.model import naming
from epic_wfms.monitor.server import background_monitor
from epic_wfms.store.database import Database
from epic_wfms.store.runs import get_run
from epic_wfms.store.schema import JobRecord, RunRecord, StfRecord
from epic_wfms.streaming.report import run_report


@dataclass
class DemoOptions:
    stfs: int = 50
    rate_hz: float = 5.0
    stf_size_bytes: int = 64 * 1024
    pre_run_stfs: int = 3
    standby: range | None = None
    timeout_s: float = 600.0
    anomalous_tfs: dict[int, set[int]] | None = None  # STF sequence -> saturated TFs (alarms)
    monitor: bool = False  # serve the web monitor while the run goes (prints its URL)
    monitor_port: int | None = None
    scale: dict[str, int] | None = None  # services: instances per role (default one)


def next_run_number(db: Database) -> int:
    with db.session() as session:
        return (session.scalar(select(func.max(RunRecord.number))) or 100) + 1


def _progress(db: Database, run: int, options: DemoOptions) -> Table:
    with db.session() as session:
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


def wait_finished(db: Database, run: int, options: DemoOptions, console: Console | None) -> bool:
    """Poll the store until the run is finished, drawing progress if there is a console."""
    deadline = time.monotonic() + options.timeout_s
    live = Live(_progress(db, run, options), console=console, refresh_per_second=4,
                auto_refresh=False) if console else None
    try:
        if live:
            live.start()
        while time.monotonic() < deadline:
            run_record = get_run(db, run)
            if live:
                live.update(_progress(db, run, options), refresh=True)
            if run_record is not None and run_record.status == RunStatus.FINISHED:
                return True
            time.sleep(0.25)
        return False
    finally:
        if live:
            live.stop()


def serve_monitor(stack: ExitStack, config: Config, options: DemoOptions, db: Database,
                  bus: MessageBus | None) -> None:
    """The web monitor next to the run, if asked (``--monitor``); its URL goes to stderr."""
    if options.monitor:
        url = stack.enter_context(background_monitor(config, db, bus, options.monitor_port))
        print(f"monitor: {url}", file=sys.stderr, flush=True)


def run_demo(config: Config, options: DemoOptions, console: Console | None,
             backend: str = "embedded") -> dict[str, Any]:
    if backend == "services":
        return run_services_demo(config, options, console)
    installation = Installation.build(config)
    orchestrator = installation.start()
    assert orchestrator is not None
    db = installation.db
    run = next_run_number(db)
    daq = installation.daq(DaqSettings(stf_size_bytes=options.stf_size_bytes,
                                       rate_hz=options.rate_hz,
                                       anomalous_tfs=options.anomalous_tfs or {}))

    def control_room() -> None:
        daq.bring_up()
        daq.stream_outside_run(options.pre_run_stfs)
        daq.run_imminent(run, target=options.stfs)
        if "fastpath" in orchestrator.roles:  # run_imminent gives the pool its lead time
            orchestrator.fastpath.pool.wait_ready(timeout=config.fastpath.pool.provision_timeout_s)
        daq.physics_run(run, options.stfs, standby=options.standby, announced=True)
        daq.shut_down()

    started = time.monotonic()
    daq_thread = threading.Thread(target=control_room, name="daq", daemon=True)
    monitor = ExitStack()
    try:
        serve_monitor(monitor, config, options, db, installation.bus)
        daq_thread.start()
        finished = wait_finished(db, run, options, console)
        daq_thread.join()
        produced = [n for n in daq.produced if n.startswith(f"swf.{run:06d}.")]
        report = run_report(db, installation.ddm, run, produced)
        if "fastpath" in orchestrator.roles:
            pool = orchestrator.fastpath.pool
            pool.wait_drained(timeout=60)
            report.update(fastpath_report(db, run), fastpath_pool=config.fastpath.pool.provider)
            if hasattr(pool, "timing"):  # provisioned through iDDS: how long it took
                report.update(fastpath_timing=pool.timing())
        report.update(outside_run_stfs=len(daq.produced) - len(produced), finished=finished,
                      wall_time_s=round(time.monotonic() - started, 2), backend="embedded",
                      store=config.db_url)
        return report
    finally:
        monitor.close()
        installation.close()


def processed_twice(db: Database, run: int) -> int:
    """STFs of the run whose reco finished in more than one job (scale-out must keep it 0)."""
    with db.session() as session:
        twice = select(JobRecord.stf_filename).where(
            JobRecord.run_number == run, JobRecord.kind == JobKind.RECO,
            JobRecord.status == JobStatus.FINISHED,
        ).group_by(JobRecord.stf_filename).having(func.count() > 1).subquery()
        return session.scalar(select(func.count()).select_from(twice))


def services_config(config: Config) -> Config:
    """The embedded configuration turned to STOMP + PostgreSQL, with a fresh namespace."""
    throwaway = not config.bus.namespace
    bus = config.bus.model_copy(update={
        "transport": "stomp", "namespace": config.bus.namespace or f"epic-{uuid.uuid4().hex[:8]}",
        "queue_expiry_s": config.bus.queue_expiry_s or (600.0 if throwaway else None),
    })
    return config.model_copy(update={
        "bus": bus, "database_url": config.database_url or POSTGRES_DEFAULT_URL,
    })


def run_services_demo(config: Config, options: DemoOptions, console: Console | None
                      ) -> dict[str, Any]:
    config = services_config(config)
    db = open_database(config)
    agents = AgentSet(config, write_config(config, Path(config.data_dir) / "services.yaml"), db)
    started = time.monotonic()
    monitor = ExitStack()
    try:
        roles = SERVICE_ROLES + (("fastpath",) if config.fastpath.enabled else ())
        agents.start_all(roles, scale=options.scale)
        serve_monitor(monitor, config, options, db, None)
        run = next_run_number(db)
        daq_args = ["--run", str(run), "--stfs", str(options.stfs), "--rate",
                    str(options.rate_hz), "--stf-size", str(options.stf_size_bytes)]
        if options.standby:
            daq_args += ["--standby", f"{options.standby.start}:{options.standby.stop}"]
        agents.start("daq", *daq_args)
        finished = wait_finished(db, run, options, console)
        produced = [naming.stf_filename(run, s) for s in range(options.stfs)]
        report = run_report(db, build_ddm(config, db), run, produced)
        if config.fastpath.enabled:
            wait_fastpath_drained(db, run, timeout=60)
            report.update(fastpath_report(db, run))
        report.update(processed_twice=processed_twice(db, run))
        report.update(outside_run_stfs=0, finished=finished, backend="services",
                      wall_time_s=round(time.monotonic() - started, 2),
                      store=config.db_url, broker=f"stomp://{config.bus.host}:{config.bus.port}",
                      namespace=config.bus.namespace, logs=str(agents.logs),
                      scale={role: (options.scale or {}).get(role, 1) for role in roles})
        return report
    finally:
        monitor.close()
        agents.stop_all()
        db.dispose()
