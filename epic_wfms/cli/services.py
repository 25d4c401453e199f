"""Start, watch, kill and stop the agents of a services installation (``--backend services``).

Each agent is ``epic-wfms agent <role> --config <file>``, logging to ``<data_dir>/logs``;
readiness and liveness come from the agents' heartbeat rows in the shared store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlalchemy import select

from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.lifecycle.agent import AgentStatus
from epic_wfms.store.database import Database
from epic_wfms.store.outage import database_down
from epic_wfms.store.schema import AgentRecord

SERVICE_ROLES = ("ingest", "archive", "process", "merge", "monitor")


def write_config(config: Config, path: Path) -> Path:
    """The one config file every agent of the installation reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(mode="json", exclude_none=True)
    data["data_dir"] = str(Path(config.data_dir).resolve())
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class AgentSet:
    def __init__(self, config: Config, config_path: Path, db: Database) -> None:
        self.config = config
        self.config_path = config_path
        self.db = db
        self.logs = Path(config.data_dir) / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, role: str, *args: str, key: str | None = None) -> subprocess.Popen:
        """Start one agent of ``role``; ``key`` names this instance (default: the role; a
        second instance of a role is ``<role>.2``), its process and its log file."""
        key = key or role
        command = [sys.executable, "-m", "epic_wfms.cli.main", "agent", role,
                   "--config", str(self.config_path), *args]
        log = (self.logs / f"{key}.log").open("a")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.processes[key] = process
        return process

    def start_all(self, roles: tuple[str, ...] = SERVICE_ROLES, timeout: float = 60,
                  scale: dict[str, int] | None = None) -> None:
        """Every role, ``scale[role]`` instances of it (default one): competing consumers
        on the role's queues, claims in the store (docs/architecture.md#scale-out)."""
        keys = []
        for role in roles:
            for n in range(1, (scale or {}).get(role, 1) + 1):
                keys.append(role if n == 1 else f"{role}.{n}")
                self.start(role, key=keys[-1])
        self.wait_ready(tuple(keys), timeout)

    def wait_ready(self, roles: tuple[str, ...], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = {self.processes[r].pid for r in roles}
            try:
                with self.db.session() as session:
                    running = set(session.scalars(select(AgentRecord.pid).where(
                        AgentRecord.pid.in_(pids), AgentRecord.status == AgentStatus.RUNNING)))
            except Exception as error:  # an outage: the agents wait for it, so do we
                if not database_down(error):
                    raise
                running = set()
            if running == pids:
                return
            for role in roles:
                if self.processes[role].poll() is not None:
                    raise EpicWfmsError(
                        f"agent {role} exited with code {self.processes[role].returncode}",
                        "it could not start", f"read {self.logs / (role + '.log')}",
                    )
            time.sleep(0.1)
        raise EpicWfmsError(f"agents {roles} not ready after {timeout:g}s", "no heartbeat",
                            f"read the logs in {self.logs}")

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[role]
        process.send_signal(sig)
        process.wait(timeout=30)

    def restart(self, role: str, *args: str) -> None:
        """``role`` is the instance's key (``process``, ``process.2``)."""
        self.start(role.partition(".")[0], *args, key=role)
        if role != "daq":
            self.wait_ready((role,))

    def stop_all(self, timeout: float = 30) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
