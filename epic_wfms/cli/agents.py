"""``epic-wfms agent <role>``: one component as its own process, wired through the broker
and the shared store, with a heartbeat row in the store and a clean stop on SIGTERM.

An agent rides out a database outage (``store/outage.py``): started while the database is
down it waits for it; a heartbeat that cannot be written is skipped (logged once per outage),
and its handlers and periodic duties retry with backoff until the database is back."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path

from epic_wfms.config import Config
from epic_wfms.daq import DaqSettings, DaqSimulator
from epic_wfms.installation import Installation
from epic_wfms.lifecycle.agent import AgentStatus
from epic_wfms.monitor.event_log import EventLog
from epic_wfms.store.outage import Stopped, database_down, wait_for_database
from epic_wfms.store.schema import AgentRecord, utcnow
from epic_wfms.streaming.orchestrator import ROLES

log = logging.getLogger(__name__)

AGENT_ROLES = ("daq", *ROLES, "fastpath", "monitor")
HEARTBEAT_S = 2.0


def agent_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def beat(installation: Installation, name: str, role: str, status: AgentStatus) -> bool:
    """Write the heartbeat row; False (logged) if the database is unreachable now."""
    try:
        with installation.db.session() as session:
            session.merge(AgentRecord(
                name=name, role=role, host=socket.gethostname(), pid=os.getpid(),
                status=status, heartbeat_at=utcnow(),
            ))
    except Exception as error:
        if not database_down(error):
            raise
        log.warning("agent %s: heartbeat not written, the database is unreachable (%s)", name,
                    str(error).strip().splitlines()[0][:200] if str(error) else error)
        return False
    return True


def build_when_reachable(config: Config, roles: tuple[str, ...], name: str,
                         stop: threading.Event) -> Installation:
    """The installation, once the database answers (an agent started during an outage
    waits instead of exiting; SIGTERM meanwhile ends it)."""
    while True:
        wait_for_database(config.db_url, f"agent {name} starting", stop)
        try:
            return Installation.build(config, roles=roles, name=name)
        except Exception as error:  # down again between the ping and the schema check
            if not database_down(error):
                raise
            log.warning("agent %s: the database went away while starting; waiting", name)


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_agent(role: str, config: Config) -> None:
    """Run ``role`` until SIGTERM/SIGINT (the daq role ends with its run)."""
    if role not in AGENT_ROLES:
        raise ValueError(f"unknown agent role {role!r}; roles: {', '.join(AGENT_ROLES)}")
    name = agent_name(role)
    if role == "fastpath":  # a worker holds one slice at a time: no prefetched backlog
        config = config.model_copy(update={"bus": config.bus.model_copy(update={"prefetch": 1})})
    if role == "daq":
        raise ValueError("the daq agent is started with run_daq_agent")
    stop = _stop_event()
    try:
        installation = build_when_reachable(config, () if role == "monitor" else (role,),
                                            name, stop)
    except Stopped:
        return
    try:
        if role == "monitor":
            EventLog(installation.bus).subscribe()
        else:
            installation.start()  # its recovery waits out an outage (orchestrator.start)
        beat(installation, name, role, AgentStatus.RUNNING)
        log.info("agent %s running", name)
        while not stop.wait(HEARTBEAT_S):
            beat(installation, name, role, AgentStatus.RUNNING)
    except Stopped:
        pass
    finally:
        beat(installation, name, role, AgentStatus.STOPPED)
        installation.close()


class DaqProgress:
    """The DAQ agent's own record of how far its run got, so a restarted DAQ resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"done": [], "next": 0}

    def done(self, step: str) -> bool:
        return step in self.data["done"]

    def mark(self, step: str | None = None, next_seq: int | None = None) -> None:
        if step:
            self.data["done"].append(step)
        if next_seq is not None:
            self.data["next"] = next_seq
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


def run_daq_agent(
    config: Config, run: int, stfs: int, rate_hz: float, stf_size: int,
    standby: range | None = None,
) -> None:
    """Play one physics run as the E0 DAQ/run control; resumable after kill -9."""
    name = agent_name("daq")
    stop = _stop_event()
    try:
        installation = build_when_reachable(config, (), name, stop)
    except Stopped:
        return
    progress_dir = config.data_dir / "daq"
    progress_dir.mkdir(parents=True, exist_ok=True)
    progress = DaqProgress(progress_dir / f"run-{run:06d}.json")
    daq = installation.daq(DaqSettings(stf_size_bytes=stf_size, rate_hz=rate_hz))
    try:
        beat(installation, name, "daq", AgentStatus.RUNNING)
        _play(daq, progress, run, stfs, standby, stop)
    finally:
        beat(installation, name, "daq", AgentStatus.STOPPED)
        installation.close()


def _play(daq: DaqSimulator, progress: DaqProgress, run: int, stfs: int,
          standby: range | None, stop: threading.Event) -> None:
    if progress.done("bring_up"):
        daq.restore(state="beam", substate="ready", flavour="lumi")
    else:
        daq.bring_up()
        progress.mark("bring_up")
    if not progress.done("run_imminent"):
        daq.run_imminent(run, target=stfs)
        progress.mark("run_imminent")
    if not progress.done("start_run"):
        daq.start_run(run)
        progress.mark("start_run")
    first = progress.data["next"]
    in_standby = standby is not None and standby.start < first < standby.stop
    daq.restore(state="run", substate="standby" if in_standby else "physics", flavour="epic")
    for sequence, index in daq.paced(range(first, stfs)):
        if stop.is_set():
            daq.flush()
            return
        if standby is not None and sequence == standby.start:
            daq.pause_run(run)
        if standby is not None and sequence == standby.stop:
            daq.resume_run(run)
        if not daq.holds(index, sequence == stfs - 1):
            daq.write_stf(run, sequence, utcnow())
            progress.mark(next_seq=sequence + 1)  # only what was announced counts as done
        else:
            daq.write_stf(run, sequence, utcnow(), hold=True)
    if not progress.done("end_run"):
        daq.end_run(run, stfs)
        progress.mark("end_run")
    if not progress.done("shut_down"):
        daq.shut_down()
        progress.mark("shut_down")
