"""Run the real iDDS server on loopback: its venv, its PostgreSQL schema, its config, gunicorn.

What is real: the ``idds-server`` 2.6.21 package — its Flask REST app
(``idds.rest.v1.app:create_app``), its ORM and schema (``idds.orm.base.utils.build_database``:
tables from its models, then ``alembic stamp head`` with its own migration scripts), its OIDC
token check (``idds.core.authentication``) and its daemons (``idds.agents.main``: Clerk,
Transformer, the Carrier's Submitter, the prompt service's Transceiver) on PostgreSQL. What differs
from production: gunicorn on plain http instead of httpd + mod_ssl, and a loopback token
issuer (the one the local PanDA server uses) instead of IAM.

iDDS rebuilds the works of a workflow from JSON by importing their classes, so the server
and its daemons get this repository on ``PYTHONPATH`` to import ``EpicPandaWork``
(``epic_wfms.wfms.idds.works``, which needs only idds-workflow).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from epic_wfms.wfms.idds.errors import IddsError
from loopback.common import (
    REPO,
    drop_database,
    free_port,
    postgres_admin,
    recreate_database,
    server_venv,
    stop_process_group,
)
from loopback.common import ensure_venv as ensure_venv_of
from loopback.common import run_checked as _run_checked
from loopback.idds.config import UPDATE_POLL_S, write_config
from loopback.panda.oidc import LoopbackIssuer

HERE = Path(__file__).resolve().parent


def default_venv() -> Path:
    return server_venv("idds", "EPIC_IDDS_VENV")


def ensure_venv(venv: Path | None = None) -> Path:
    """The isolated venv that runs idds-server (idds 2.6.21 and what pip resolved for it on
    Python 3.11, pinned in requirements.txt), built once and cached."""
    return ensure_venv_of(venv or default_venv(), HERE / "requirements.txt", "iDDS server",
                          error=IddsError)


def run_checked(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    return _run_checked(cmd, what, IddsError, **kwargs)


@dataclass
class LocalIddsServer:
    """idds-server on 127.0.0.1 against its own PostgreSQL database ``epic_idds_<random>``."""

    workdir: Path
    db_name: str = field(default_factory=lambda: f"epic_idds_{uuid.uuid4().hex[:8]}")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_admin: str = "postgres"
    vo: str = "epic"
    venv: Path = field(default_factory=default_venv)
    port: int = 0
    drop_database: bool = True
    # the prompt service's broker: the Transceiver daemon takes requests on ``prompt_topic``
    # and answers on ``reply_topic``. iDDS's broker code connects without a virtual host, so
    # STOMP sends the host name: RabbitMQ needs a vhost "127.0.0.1" (.ci/services-up makes it)
    stomp_broker: str = "127.0.0.1:61613"
    stomp_user: str = "guest"
    stomp_password: str = "guest"
    prompt_topic: str = "/topic/panda.workflow"
    reply_topic: str = "/topic/panda.workers"
    daemon_agents: list[str] = field(default_factory=list)
    # how often the daemons look at running requests, transforms and processings (s): short
    # to run workflows end to end quickly, long where commands are tested (the Clerk drops a
    # command whose request it finds locked by an update: config.UPDATE_POLL_S)
    update_poll_s: int = UPDATE_POLL_S
    # an issuer shared with other servers (and the monitor); None: one of its own
    issuer: LoopbackIssuer | None = None
    _proc: subprocess.Popen | None = None
    _daemons: subprocess.Popen | None = None
    _issuer: LoopbackIssuer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "idds.cfg"

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> LocalIddsServer:
        ensure_venv(self.venv)
        self.workdir = self.workdir.resolve()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._issuer = self.issuer or LoopbackIssuer().start()
        self.port = self.port or free_port()
        self._write_config()
        try:
            self.create_database()
            log = open(self.workdir / "gunicorn.log", "wb")  # noqa: SIM115 (outlives this call)
            self._proc = subprocess.Popen(
                [str(self.venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{self.port}",
                 "-w", "1", "--threads", "4", "--timeout", "120", "--graceful-timeout", "2",
                 "--control-socket", str(self.workdir / "gunicorn.ctl"),
                 "idds.rest.v1.app:create_app()"],
                env=self.server_env(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            self._wait_alive(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stop_daemons()
        if self._proc is not None:
            stop_process_group(self._proc)
            self._proc = None
        if self._issuer is not None and self._issuer is not self.issuer:
            self._issuer.stop()
        self._issuer = None
        if self.drop_database:
            with self._admin() as conn:
                drop_database(conn, self.db_name)

    def __enter__(self) -> LocalIddsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- identities ------------------------------------------------------------------
    def token(self, name: str = "Epic Operator") -> str:
        """An ID token of the loopback issuer for a member of the VO (``name`` becomes the
        iDDS username: iDDS takes the token's ``name`` claim)."""
        assert self._issuer is not None, "start() the server first"
        return self._issuer.token(name, [self.vo])

    def auth(self, name: str = "Epic Operator") -> dict:
        """idds-client's ``auth`` for that identity (OIDC, this VO)."""
        return {"auth_type": "oidc", "oidc_token": self.token(name), "vo": self.vo}

    # ---- daemons ---------------------------------------------------------------------
    def start_daemons(self, agents: list[str], env: dict[str, str] | None = None) -> None:
        """Start iDDS's own daemon process (``idds.agents.main``) with ``agents``, e.g.
        ``["clerk", "transformer"]``; their poll periods are in config.py.
        ``env`` adds e.g. panda-client's ``PANDA_URL``/``PANDA_AUTH*`` for the PanDA calls
        the prompt service makes (see ``panda_env``)."""
        self.stop_daemons()
        env = {**self.server_env(), **(env or {}), "IDDS_AGENTS": ",".join(agents)}
        with open(self.log_dir / "agents.out", "ab") as log:
            self._daemons = subprocess.Popen(
                [str(self.venv / "bin" / "python"), "-m", "idds.agents.main"], env=env,
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.daemon_agents = list(agents)

    def panda_env(self, url: str, token: str, auth_vo: str) -> dict[str, str]:
        """panda-client's environment for the daemons: where PanDA is, and whose token."""
        config_root = self.workdir / "panda"
        config_root.mkdir(exist_ok=True)
        return {"PANDA_URL": url, "PANDA_URL_SSL": url, "PANDA_AUTH": "oidc",
                "PANDA_AUTH_VO": auth_vo, "PANDA_AUTH_ID_TOKEN": token,
                "PANDA_VERIFY_HOST": "off", "PANDA_BEHIND_REAL_LB": "1",
                "PANDA_CONFIG_ROOT": str(config_root)}

    @staticmethod
    def rucio_env(config_file: Path) -> dict[str, str]:
        """rucio-clients' environment for the daemons: the Rucio server and account of the
        works' input datasets (``EpicPandaWork`` lists their files)."""
        return {"RUCIO_CONFIG": str(config_file)}

    def stop_daemons(self) -> None:
        """Stop them as in production: SIGTERM, they finish their cycle and exit."""
        if self._daemons is not None:
            stop_process_group(self._daemons)
            self._daemons = None

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout_s: float = 60) -> float:
        """Wait until the daemons made ``predicate()`` true; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self._daemons is not None and self._daemons.poll() is not None:
                break
            if predicate():
                return time.monotonic() - started
            time.sleep(0.3)
        tail = (self.log_dir / "agents.out").read_text(errors="replace")[-1200:]
        raise IddsError(f"iDDS daemons {self.daemon_agents}: {what} did not happen",
                        why=f"waited {time.monotonic() - started:.0f} s; their log ends: {tail}",
                        fix=f"read {self.log_dir / 'agents.out'} and {self.log_dir / 'idds.log'}")

    # ---- database --------------------------------------------------------------------
    def _admin(self) -> psycopg.Connection:
        return postgres_admin(self.pg_host, self.pg_port, self.pg_admin)

    def create_database(self) -> None:
        """The database, then iDDS's schema: its models' tables and ``alembic stamp head``."""
        with self._admin() as conn:
            recreate_database(conn, self.db_name)
        run_checked([str(self.venv / "bin" / "python"), "-c",
              "from idds.orm.base.utils import build_database; build_database(echo=False)"],
             "building iDDS's schema (idds.orm.base.utils.build_database)",
             env=self.server_env(), cwd=self.workdir)
        # iDDS 2.6.21's daemons only look at requests from ``min_request_id`` on, which each
        # daemon loads from its meta table at start and then every 600 s; the Clerk records it
        # when it takes the first request, but a daemon that started on an empty database
        # keeps None and ignores every request until its next reload (the Poller: running
        # processings unpolled for up to 10 minutes). Set it as a running iDDS has it.
        run_checked([str(self.venv / "bin" / "python"), "-c",
              "from idds.core.requests import set_min_request_id; set_min_request_id(1)"],
             "recording iDDS's min_request_id (idds.core.requests.set_min_request_id)",
             env=self.server_env(), cwd=self.workdir)

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Read iDDS's own tables (schema ``doma_idds``) directly, for checks."""
        with psycopg.connect(host=self.pg_host, port=self.pg_port, user=self.pg_admin,
                             dbname=self.db_name) as conn:
            return conn.execute(sql, params).fetchall()

    # ---- configuration ---------------------------------------------------------------
    def database_url(self) -> str:
        # psycopg2, as iDDS deploys it: with psycopg 3, SQLAlchemy binds the REST layer's
        # string ids as VARCHAR and PostgreSQL refuses ``bigint = varchar``
        return (f"postgresql+psycopg2://{self.pg_admin}@{self.pg_host}:{self.pg_port}/"
                f"{self.db_name}")

    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("IDDS", "VIRTUAL_ENV", "PYTHON", "X509"))}
        env.update(IDDS_CONFIG=str(self.config_file),
                   IDDS_AUTH_CONFIG=str(self.workdir / "auth.cfg"),
                   ALEMBIC_CONFIG=str(self.workdir / "alembic.ini"),
                   PYTHONPATH=str(REPO),  # EpicPandaWork, imported by name from the JSON
                   PATH=f"{self.venv / 'bin'}:{env.get('PATH', '')}")
        return env

    def _write_config(self) -> None:
        assert self._issuer is not None
        write_config(self.workdir, venv=self.venv, database_url=self.database_url(),
                     rest_url=self.url, vo=self.vo, client_id=self._issuer.client_id,
                     discovery_url=self._issuer.discovery_url, broker={
                         "broker": self.stomp_broker, "username": self.stomp_user,
                         "password": self.stomp_password},
                     prompt_topic=self.prompt_topic, reply_topic=self.reply_topic,
                     update_poll_s=self.update_poll_s)

    def _wait_alive(self, timeout_s: float) -> None:
        """Ready when iDDS answers ``/ping`` for a token of ours (REST app, DB, OIDC check)."""
        deadline = time.monotonic() + timeout_s
        request = urllib.request.Request(f"{self.url}/ping", headers={
            "X-IDDS-Auth-Type": "oidc", "X-IDDS-Auth-VO": self.vo,
            "X-IDDS-Auth-Token": self.token("epic-wfms readiness")})
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if b"OK" in response.read():
                        return
            except OSError:
                time.sleep(0.3)
        log = (self.workdir / "gunicorn.log").read_text(errors="replace")[-1500:]
        raise IddsError("the local iDDS server did not come up",
                        why=f"no answer on {self.url}/ping within {timeout_s:.0f} s; "
                            f"gunicorn says: {log}",
                        fix=f"read {self.log_dir / 'idds_rest.log'} and gunicorn.log")
