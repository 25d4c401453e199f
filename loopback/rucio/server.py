"""A real Rucio server on loopback, for the test-suite, the benchmark and ``demo --ddm rucio``.

The server (package ``rucio``) pins SQLAlchemy/stomp.py/psycopg versions that conflict with
ours, so it lives in its own virtualenv (``.venv-rucio``, created once, keyed by version).
Started here: a private PostgreSQL database, ``rucio.cfg``, the bootstrap (schema, base VO,
root account), gunicorn serving the REST API, and ``rucio-hermes`` publishing Rucio's
events to the STOMP broker. No FTS can run here: rules are completed by our site-local
transfer agent (``transfers.py``), Rucio's own lock/rule logic decides the rule state.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from epic_wfms.errors import DataManagementError
from loopback.common import ALEMBIC_LOGGING, ensure_venv, free_port, server_venv

HERE = Path(__file__).resolve().parent
RUCIO_VERSION = "41.5.1"  # as pinned in requirements.txt (the server) and for rucio-clients
API_ENDPOINTS = (
    "accounts, auth, config, credentials, dids, dirac, export, heartbeats, identities, import, "
    "lifetime_exceptions, locks, meta_conventions, ping, redirect, replicas, requests, rses, "
    "rules, scopes, subscriptions, vos"
)  # no "traces": that endpoint refuses to load without a [trace] broker


def ensure_server_venv(venv: Path | None = None) -> Path:
    """The Rucio server's own virtualenv (``.venv-rucio``), built once and cached."""
    return ensure_venv(venv or default_venv(), HERE / "requirements.txt", "Rucio server",
                       error=DataManagementError)


def default_venv() -> Path:
    return server_venv("rucio", "EPIC_RUCIO_VENV")


@dataclass
class LocalRucioServer:
    """Lifecycle of one server: ``start()`` (about 10-30 s warm), ``stop()`` drops everything."""

    workdir: Path
    venv: Path = field(default_factory=lambda: default_venv())
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    stomp_host: str = "127.0.0.1"
    stomp_port: int = 61613
    stomp_user: str = "guest"
    stomp_password: str = "guest"
    events_destination: str = "/topic/rucio.events"
    username: str = "epicroot"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    port: int = 0
    database: str = field(default_factory=lambda: f"epic_rucio_{secrets.token_hex(4)}")
    _processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir, self.venv = self.workdir.resolve(), self.venv.resolve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "rucio.cfg"

    def start(self, timeout: float = 90) -> LocalRucioServer:
        ensure_server_venv(self.venv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._create_database()
        try:
            self._boot(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _boot(self, timeout: float) -> None:
        self._write_config()
        self._run_python(
            "from rucio.db.sqla.util import build_database, create_base_vo, create_root_account\n"
            "build_database(); create_base_vo(); create_root_account()"
        )
        self._spawn("gunicorn", [
            str(self.venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{self.port}", "-w", "2",
            "--threads", "4", "--timeout", "120", "--graceful-timeout", "2",
            "--worker-tmp-dir", str(self.workdir), "rucio.web.rest.flaskapi.v1.main:application",
        ])
        self._wait_ping(timeout)
        self._spawn("hermes", [str(self.venv / "bin" / "rucio-hermes"), "--sleep-time", "1"])

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.terminate()
        for process in self._processes:
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        self._drop_database()

    # -- pieces ---------------------------------------------------------------------------
    def _admin_engine(self):
        return create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")

    def _create_database(self) -> None:
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            engine.dispose()

    def _drop_database(self) -> None:
        engine = self._admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        finally:
            engine.dispose()

    def database_url(self) -> str:
        url = make_url(self.postgres_url).set(drivername="postgresql+psycopg",
                                              database=self.database)
        return url.render_as_string(hide_password=False)

    def _write_config(self) -> None:
        migrate = next(self.venv.glob("lib/python*/site-packages/rucio/db/sqla/migrate_repo"))
        (self.workdir / "alembic.ini").write_text(
            f"[alembic]\nscript_location = {migrate}\n"
            f"sqlalchemy.url = {self.database_url()}\n{ALEMBIC_LOGGING}"
        )
        logdir = self.workdir / "log"
        logdir.mkdir(exist_ok=True)
        self.config_file.write_text(RUCIO_CFG.format(
            logdir=logdir, url=self.url, username=self.username, password=self.password,
            database=self.database_url(), alembic=self.workdir / "alembic.ini",
            endpoints=API_ENDPOINTS, stomp_host=self.stomp_host, stomp_port=self.stomp_port,
            stomp_user=self.stomp_user, stomp_password=self.stomp_password,
            destination=self.events_destination,
        ))

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env["RUCIO_CONFIG"] = str(self.config_file)
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        return env

    def _run_python(self, code: str) -> str:
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
            env=self._env(), cwd=self.workdir, check=False,
        )
        if done.returncode:
            raise DataManagementError(
                "Rucio server bootstrap failed", done.stderr.strip()[-1500:],
                f"see {self.config_file} and the PostgreSQL database {self.database}",
            )
        return done.stdout

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        self._processes.append(subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=self._env(), cwd=self.workdir,
            start_new_session=True,
        ))

    def _wait_ping(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._processes[-1].poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        log = (self.workdir / "gunicorn.log").read_text(errors="replace")[-1500:]
        raise DataManagementError(
            f"the Rucio server did not answer on {self.url}/ping", log or "no output",
            "read gunicorn.log in the server's work directory",
        )


RUCIO_CFG = """\
[common]
logdir = {logdir}
loglevel = WARNING

[client]
rucio_host = {url}
auth_host = {url}
auth_type = userpass
username = {username}
password = {password}
account = root
request_retries = 3

[database]
default = {database}
pool_size = 4
max_overflow = 4
echo = 0

[bootstrap]
userpass_identity = {username}
userpass_pwd = {password}
userpass_email = epic-wfms@localhost

[alembic]
cfg = {alembic}

[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash

[api]
endpoints = {endpoints}

[monitor]
enable_metrics = False

[hermes]
services_list = activemq
send_email = False

[messaging-hermes]
use_ssl = False
brokers = {stomp_host}
port = {stomp_port}
nonssl_port = {stomp_port}
username = {stomp_user}
password = {stomp_password}
broker_virtual_host = /
destination = {destination}
email_from = epic-wfms@localhost
"""


def provision(client, rses: list, account: str = "root", quota_bytes: int = 10**15) -> None:
    """Create the POSIX RSEs (idempotent): file protocol, site/type attributes, a quota.

    ``rses`` are ``LocalRSE``; a non-deterministic RSE (the DAQ buffer) gets prefix ``/`` so
    the PFN of a file is its absolute path, wherever the DAQ wrote it.
    """
    from rucio.common.exception import Duplicate, RSEProtocolPriorityError

    for rse in rses:
        try:
            client.add_rse(rse.name, deterministic=rse.deterministic, rse_type=rse.rse_type)
        except Duplicate:
            continue
        prefix = f"{rse.root}/" if rse.deterministic else "/"
        if rse.deterministic:
            rse.root.mkdir(parents=True, exist_ok=True)
        operations = {"read": 1, "write": 1, "delete": 1}
        with contextlib.suppress(Duplicate, RSEProtocolPriorityError):
            client.add_protocol(rse.name, {
                "scheme": "file", "hostname": "localhost", "port": 0, "prefix": prefix,
                "impl": "rucio.rse.protocols.posix.Default",
                "domains": {"lan": operations, "wan": {
                    **operations, "third_party_copy_read": 1, "third_party_copy_write": 1}},
            })
        client.add_rse_attribute(rse.name, "site", rse.site)
        client.add_rse_attribute(rse.name, "type", rse.rse_type)
        client.set_local_account_limit(account, rse.name, quota_bytes)


def add_scope(client, scope: str, account: str = "root") -> None:
    from rucio.common.exception import Duplicate

    with contextlib.suppress(Duplicate):
        client.add_scope(account, scope)
