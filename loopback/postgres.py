"""A private PostgreSQL server for the drills that stop and restart the database.

The machine's shared PostgreSQL (127.0.0.1:5432) also holds the session's Rucio, PanDA and
iDDS servers: a test that restarts it would disturb them. This is a server of its own:
``initdb`` into a temporary directory, listening on a free loopback port, with trust
authentication, started, stopped (fast: connections are cut, as in an outage) and started
again by the test that owns it.

PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` system user
(the data directory is handed to it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from loopback.common import HarnessError, free_port


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not versions:
        raise HarnessError("no PostgreSQL server binaries (pg_ctl, initdb) found",
                           "a private PostgreSQL needs the server package",
                           "install postgresql (Debian) or put its bin directory on PATH")
    return Path(versions[-1]).parent


@dataclass
class LocalPostgres:
    """One private server; ``url`` is a SQLAlchemy URL of its ``postgres`` database."""

    workdir: Path
    port: int = 0

    @classmethod
    def temporary(cls) -> LocalPostgres:
        """In a new directory under the system's temporary directory (the ``postgres`` user
        must reach it: pytest's own ``tmp_path`` lies under a directory only root enters)."""
        return cls(Path(tempfile.mkdtemp(prefix="epic-pg-")))

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.data = self.workdir / "data"
        self.port = self.port or free_port()
        self._bin = _bin_dir()
        self._user = "postgres" if os.getuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", self._user, "--", *cmd] if self._user else list(cmd)

    def _run(self, what: str, *cmd: str) -> None:
        done = subprocess.run(self._as_owner(*cmd), capture_output=True, text=True, check=False)
        if done.returncode:
            raise HarnessError(f"private PostgreSQL: {what} failed (exit {done.returncode})",
                               (done.stderr or done.stdout)[-1500:],
                               f"read {self.workdir / 'postgres.log'}")

    def start(self, timeout_s: float = 60) -> LocalPostgres:
        """initdb on first start, then ``pg_ctl start``; returns once it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._user:
            owner = pwd.getpwnam(self._user)
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", str(self._bin / "initdb"), "-D", str(self.data), "-U",
                      "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run("start", str(self._bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.workdir / "postgres.log"), "-w", "-t", str(int(timeout_s)), "-o",
                  f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200 -c fsync=off", "start")
        self._wait_ready(timeout_s)
        return self

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        if (self.data / "postmaster.pid").exists():
            self._run("stop", str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                      "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def restart(self, down_s: float = 0.0) -> None:
        """Down for ``down_s`` seconds (an outage of that length), then up again."""
        self.stop()
        time.sleep(down_s)  # the length of the outage is the drill's parameter, not a wait
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(HarnessError):
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise HarnessError("private PostgreSQL did not accept connections",
                                       str(error), f"read {self.workdir / 'postgres.log'}"
                                       ) from error
                time.sleep(0.1)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()
