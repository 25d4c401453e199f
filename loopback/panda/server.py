"""Run the real PanDA server on loopback: its venv, its PostgreSQL schema, its config, gunicorn.

What is real: the ``panda-server`` 1.0.4 package (API, TaskBuffer, task-parameter checks, DB
layer) on PostgreSQL, authenticating our OIDC tokens. Its tables are generated from its own
Spec classes (``schema_gen.py``), or taken from PanDA's reference schema when a checkout is
named by ``EPIC_PANDA_SCHEMA_DIR``. What differs from production: gunicorn instead of
httpd+mod_wsgi (``wsgi.py``), plain http on 127.0.0.1, a loopback token issuer instead of
IAM, and default partitions instead of pg_partman/pg_cron housekeeping (not installed here).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from epic_wfms.wfms.panda.errors import PandaError
from loopback.common import (
    PLUGINS,
    drop_database,
    free_port,
    postgres_admin,
    recreate_database,
    run_checked,
    server_venv,
    stop_process_group,
)
from loopback.common import ensure_venv as ensure_venv_of
from loopback.panda.chain import ADDERS, daemon_process, heartbeat_config, jedi_cfg, jedi_process
from loopback.panda.oidc import LoopbackIssuer
from loopback.supervise import Supervisor

HERE = Path(__file__).resolve().parent
PANDA_SERVER = "panda-server==1.0.4"
SCHEMA_FILES = [  # the order of panda_db_init.sh, without pg_cron/pg_partman/bigmon
    "pg_PANDA_TABLE", "pg_PANDA_SEQUENCE", "pg_PANDA_FUNCTION", "pg_PANDA_TRIGGER",
    "pg_PANDAMETA_TABLE", "pg_PANDAMETA_SEQUENCE", "pg_PANDAARCH_TABLE", "pg_DEFT_TABLE",
]
SCHEMA = "doma_panda"


def default_venv() -> Path:
    return server_venv("panda", "EPIC_PANDA_VENV")


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    return run_checked(cmd, what, PandaError, **kwargs)


def ensure_service_account() -> None:
    """panda-server's build hook chowns to ``atlpan:zp`` when installed as root."""
    if os.getuid() != 0:
        return
    try:
        pwd.getpwnam("atlpan")
    except KeyError as exc:
        raise PandaError("the PanDA service account `atlpan` does not exist",
                         why="panda-server's build hook looks it up when installed as root",
                         fix="run `bash .ci/services-up` (it creates atlpan and group zp)") from exc


def ensure_venv(venv: Path | None = None) -> Path:
    """The isolated venv that runs panda-server (built once, then cached): panda-server
    itself without its dependencies, then the runtime pinned in requirements.txt."""
    ensure_service_account()
    return ensure_venv_of(venv or default_venv(), HERE / "requirements.txt", "PanDA server",
                          first=[PANDA_SERVER], error=PandaError)


def reference_schema_dir() -> Path | None:
    """PanDA's reference PostgreSQL schema (``schema/postgres/sqls`` of the PanDAWMS/
    panda-database repository), if a checkout is named by ``EPIC_PANDA_SCHEMA_DIR``."""
    value = os.environ.get("EPIC_PANDA_SCHEMA_DIR")
    if not value:
        return None
    sqls = Path(value)
    if not (sqls / "pg_PANDA_TABLE.sql").exists():
        raise PandaError(f"EPIC_PANDA_SCHEMA_DIR={value} holds no pg_PANDA_TABLE.sql",
                         fix="point it at schema/postgres/sqls of a panda-database checkout")
    return sqls


@dataclass(frozen=True)
class PandaIdentity:
    """Who calls PanDA: a token and the ``Origin`` (VO or ``vo.role``) it is presented with."""

    name: str
    token: str
    auth_vo: str

    @property
    def is_production(self) -> bool:
        return self.auth_vo.endswith(".production")


@dataclass
class LocalPandaServer:
    """panda-server on 127.0.0.1 against its own PostgreSQL database."""

    workdir: Path
    db_name: str = field(default_factory=lambda: f"epic_panda_{uuid.uuid4().hex[:8]}")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_admin: str = "postgres"
    vo: str = "epic"
    venv: Path = field(default_factory=default_venv)
    port: int = 0
    drop_database: bool = True
    # PanDA queues (as CRIC would publish them) -> their storage endpoint
    queues: dict[str, str] = field(default_factory=lambda: {
        "BNL_EPIC_PROMPT": "BNL_DISK", "JLAB_EPIC_PROMPT": "JLAB_DISK"})
    # PanDA queue -> the PanDA site it belongs to (CRIC's panda_site): ePIC's E1 sites. A
    # task naming a site (``PandaSite``, as iDDS's prompt service sets it) runs only there
    panda_sites: dict[str, str] = field(default_factory=lambda: {
        "BNL_EPIC_PROMPT": "E1_BNL", "JLAB_EPIC_PROMPT": "E1_JLAB"})
    # a rucio.cfg ([client] section) for JEDI's DDM client: the Rucio server holding the STFs
    rucio_config: Path | None = None
    # an issuer shared with other servers (and the monitor); None: one of its own
    issuer: LoopbackIssuer | None = None
    # run the chain (chain.py): JEDI's master and the server's daemons (Adder, heartbeat
    # watcher) for the life of the server, watched and restarted
    chain: bool = False
    jedi_loop_s: int = 2  # JEDI's refiner, feeder, job generator, commando cycles
    # a running job without a pilot heartbeat this long fails; keep it above 2 minutes: after
    # a failed payload Pilot 3 (3.7) waits 115 s for a stage-out it already did, silent,
    # before its final report, and a shorter timeout loses the payload's exit code
    heartbeat_timeout_s: int = 150
    watcher_period_s: int = 30  # how often the watcher looks for such jobs
    _proc: subprocess.Popen | None = None
    _issuer: LoopbackIssuer | None = None
    _supervisor: Supervisor | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/server/panda"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    # ---- lifecycle -------------------------------------------------------------------
    def start(self, timeout_s: float = 120.0) -> LocalPandaServer:
        if self.chain and self.rucio_config is None:
            raise PandaError("the PanDA chain needs a Rucio server",
                             why="JEDI's feeder reads datasets from Rucio and ePIC's adder "
                             "registers outputs there",
                             fix="pass rucio_config=<rucio.cfg> with chain=True")
        ensure_venv(self.venv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._issuer = self.issuer or LoopbackIssuer().start()
        self.port = self.port or free_port()
        self._write_config()
        self.create_database()
        log = open(self.workdir / "gunicorn.log", "wb")  # noqa: SIM115 (outlives this call)
        self._proc = subprocess.Popen(
            [str(self.venv / "bin" / "gunicorn"), "--chdir", str(HERE),
             "-b", f"127.0.0.1:{self.port}", "-w", "1", "--threads", "4", "--timeout", "300",
             "--graceful-timeout", "2", "--control-socket", str(self.workdir / "gunicorn.ctl"),
             "wsgi:application"],
            env=self.server_env(), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_alive(timeout_s)
        if self.chain:
            self._supervisor = Supervisor([jedi_process(self), daemon_process(self)],
                                          self.workdir / "supervisor.log").start()
        return self

    @property
    def supervisor(self) -> Supervisor | None:
        """The chain's processes (``processes``: JEDI, the daemons) when ``chain``."""
        return self._supervisor

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._proc is not None:
            # gunicorn and PanDA's ConBridge children share the session we started it in
            stop_process_group(self._proc, grace_s=20)
            self._proc = None
        if self._issuer is not None and self._issuer is not self.issuer:
            self._issuer.stop()
        self._issuer = None
        if self.drop_database:
            with self._admin() as conn:
                drop_database(conn, self.db_name)

    def __enter__(self) -> LocalPandaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- JEDI ------------------------------------------------------------------------
    def refine_tasks(self) -> list[dict]:
        """Run JEDI's TaskRefiner step (with our ``EpicTaskRefiner``) once: see jedi_refine.py."""
        out = _run([str(self.venv / "bin" / "python"), str(HERE / "jedi_refine.py"),
                    str(PLUGINS / "panda"), self.vo],
                   "JEDI task refinement", env=self.server_env(), cwd=str(self.workdir)).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def jedi_cycle(self, *agents: str, identity: PandaIdentity | None = None) -> list[dict]:
        """One cycle of JEDI's ``feed`` (ContentsFeeder), ``generate`` (JobGenerator),
        ``command`` (TaskCommando) and/or ``finish`` (PostProcessor) agents, in the order
        given: see jedi_cycle.py. JEDI's DDM client asks the Rucio server named by
        ``rucio_config``; JEDI calls the server's API as ``identity`` (production role)."""
        who = identity or self.identity("Epic JEDI", production=True)
        env = self.server_env()
        env.update(PANDA_AUTH="oidc", PANDA_AUTH_VO=who.auth_vo, PANDA_AUTH_ID_TOKEN=who.token,
                   PANDA_API_URL=self.api_url, PANDA_API_URL_SSL=self.api_url)
        purelib = next((self.venv / "lib").glob("python3*/site-packages"))
        # as JEDI's sysconfig (templates/sysconfig/panda_jedi_env): it imports liveconfigparser
        # and taskbuffer as top-level packages
        env["PYTHONPATH"] = f"{purelib}/pandacommon:{purelib}/pandaserver:{purelib}"
        if self.rucio_config is not None:
            env["RUCIO_CONFIG"] = str(self.rucio_config)
        out = _run([str(self.venv / "bin" / "python"), str(HERE / "jedi_cycle.py"),
                    str(PLUGINS / "panda"), self.vo, *agents],
                   f"JEDI cycle ({', '.join(agents)})", env=env, cwd=str(self.workdir)).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def add_outputs(self) -> list[int]:
        """One cycle of the server's Adder: jobs a pilot reported leave ``holding`` for
        ``finished``/``failed`` (see adder_cycle.py). Returns the PandaIDs processed."""
        out = _run([str(self.venv / "bin" / "python"), str(HERE / "adder_cycle.py")],
                   "the PanDA Adder cycle", env=self.server_env(), cwd=str(self.workdir)).stdout
        return [j for line in out.splitlines() if line.startswith("{")
                for j in json.loads(line)["jobs"]]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    # ---- identities ------------------------------------------------------------------
    def identity(self, name: str = "Epic Production", production: bool = True) -> PandaIdentity:
        """A token for a member of VO ``epic`` (with ``epic/production`` if ``production``)."""
        assert self._issuer is not None, "start() the server first"
        groups = [self.vo, f"{self.vo}/production"] if production else [self.vo]
        auth_vo = f"{self.vo}.production" if production else self.vo
        return PandaIdentity(name, self._issuer.token(name, groups), auth_vo)

    # ---- database --------------------------------------------------------------------
    def _admin(self) -> psycopg.Connection:
        return postgres_admin(self.pg_host, self.pg_port, self.pg_admin)

    def create_database(self) -> None:
        with self._admin() as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname='panda'").fetchone():
                with contextlib.suppress(psycopg.errors.DuplicateObject):
                    conn.execute("CREATE ROLE panda LOGIN")
            recreate_database(conn, self.db_name, owner="panda")
        psql = shutil.which("psql") or "psql"
        base = [psql, "-q", "-h", self.pg_host, "-p", str(self.pg_port), "-U", self.pg_admin,
                "-d", self.db_name, "-v", "ON_ERROR_STOP=1"]
        sqls = reference_schema_dir()
        if sqls is not None:
            for name in SCHEMA_FILES:
                _run([*base, "-f", str(sqls / f"{name}.sql")], f"applying PanDA schema {name}")
            _run([*base, "-f", str(sqls / "post_step_panda.sql")], "applying PanDA's post step")
        else:
            ddl = _run([str(self.venv / "bin" / "python"), str(HERE / "schema_gen.py")],
                       "generating PanDA's schema from its Spec classes",
                       env=self.server_env()).stdout
            as_panda = [*base[:6], "panda", *base[7:]]  # the server's role owns its tables
            _run([*as_panda, "-c", "SET client_min_messages=warning", "-f", "-"],
                 "applying the generated PanDA schema", input=ddl)
        with psycopg.connect(host=self.pg_host, port=self.pg_port, user=self.pg_admin,
                             dbname=self.db_name, autocommit=True) as conn:
            parents = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind = 'p'").fetchall()
            for nsp, rel in parents:  # what pg_partman would create: here one default each
                conn.execute(f'CREATE TABLE IF NOT EXISTS "{nsp}"."{rel}_default" '
                             f'PARTITION OF "{nsp}"."{rel}" DEFAULT')
            for queue, ddm in self.queues.items():  # the queue configuration CRIC publishes
                conn.execute(
                    f"INSERT INTO {SCHEMA}.schedconfig_json (panda_queue, data, last_update) "
                    "VALUES (%s, %s, now())", (queue, json.dumps({
                        "siteid": queue, "nickname": queue, "type": "production",
                        "cloud": "US", "status": "online", "ddm": ddm, "vo_name": self.vo,
                        "corecount": 8, "corepower": 10, "maxrss": 64000, "maxtime": 86400,
                        "resource_type": "SCORE", "wnconnectivity": "full",
                        # JEDI's brokerage skips queues without recent pilot requests unless
                        # the queue allows it (here no pilot runs before JEDI brokers)
                        "catchall": "allow_no_pilot"})))
            for queue, ddm in self.queues.items():  # the queue's storage, as CRIC publishes it
                conn.execute(
                    f"INSERT INTO {SCHEMA}.ddm_endpoint (ddm_endpoint_name, site_name, "
                    "ddm_spacetoken_name, is_tape, type, blacklisted, blacklisted_read, "
                    "blacklisted_write, detailed_status) VALUES (%s, %s, 'DISK', 'N', 'DISK', "
                    "'N', 'N', 'N', '{}')", (ddm, queue))
                conn.execute(
                    f"INSERT INTO {SCHEMA}.panda_ddm_relation (panda_site_name, "
                    "ddm_endpoint_name, is_local, roles, order_read, order_write, default_read, "
                    "default_write) VALUES (%s, %s, 'Y', 'read_lan,write_lan', 1, 1, 'Y', 'Y')",
                    (queue, ddm))
            for site in sorted(set(self.panda_sites.values())):
                conn.execute(f"INSERT INTO {SCHEMA}.site (site_name, role, tier_level, state) "
                             "VALUES (%s, 'satellite', 1, 'ACTIVE')", (site,))
            for queue, site in self.panda_sites.items():
                if queue in self.queues:
                    conn.execute(
                        f"INSERT INTO {SCHEMA}.panda_site (panda_site_name, site_name, "
                        "storage_site_name, default_ddm_endpoint, is_local) "
                        "VALUES (%s, %s, %s, %s, 'Y')", (queue, site, site, self.queues[queue]))
            # PanDA's resource types (cores, RAM per core in MB), as in production: JEDI's
            # refiner gives each task one, its JobGenerator cycles over them
            conn.execute(
                f"INSERT INTO {SCHEMA}.resource_types (resource_name, mincore, maxcore, "
                "minrampercore, maxrampercore) VALUES ('SCORE', 1, 1, NULL, 2000), "
                "('SCORE_HIMEM', 1, 1, 2001, NULL), ('MCORE', 2, NULL, NULL, 2000), "
                "('MCORE_HIMEM', 2, NULL, 2001, NULL)")
            conn.execute(
                f"INSERT INTO {SCHEMA}.jedi_work_queue (queue_id, queue_name, queue_type, vo, "
                "queue_function) VALUES (10, 'epic_prompt', 'managed', %s, 'Resource'), "
                "(11, 'epic_user', 'user', %s, 'Resource'), "
                # prodSourceLabel test: what snakemake-executor-plugin-panda submits
                "(12, 'epic_test', 'test', %s, 'Resource')", (self.vo, self.vo, self.vo))
            for row in heartbeat_config(self.heartbeat_timeout_s):
                conn.execute(f"INSERT INTO {SCHEMA}.config (app, component, key, value, type, "
                             "vo, descr) VALUES (%s, %s, %s, %s, %s, %s, %s)", row)

    # ---- configuration ---------------------------------------------------------------
    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA", "VIRTUAL_ENV"))}
        env.update(PANDA_HOME=str(self.workdir), PANDA_URL=self.url, PANDA_URL_SSL=self.url,
                   PANDACACHE_URL=self.url, PANDA_BEHIND_REAL_LB="1",
                   PANDA_API_URL=self.api_url, PANDA_API_URL_SSL=self.api_url,
                   PATH=f"{self.venv / 'bin'}:{env.get('PATH', '')}")
        env["PYTHONPATH"] = str(PLUGINS / "panda")  # ePIC's server plug-ins (epic_panda)
        if self.rucio_config is not None:  # the Adder's Rucio (ePIC's adder plug-in)
            env["RUCIO_CONFIG"] = str(self.rucio_config)
        return env

    def _write_config(self) -> None:
        etc = self.workdir / "etc" / "panda"
        auth = self.workdir / "auth"
        for d in (etc, auth, self.log_dir, self.workdir / "cache" / "jedilog"):
            d.mkdir(parents=True, exist_ok=True)
        assert self._issuer is not None
        for vo_role in (self.vo, f"{self.vo}.production"):
            (auth / f"{vo_role}_auth_config.json").write_text(json.dumps({
                "client_id": self._issuer.client_id, "vo": self.vo,
                "oidc_config_url": self._issuer.discovery_url}))
        (etc / "panda_common.cfg").write_text(COMMON_CFG.format(
            logdir=self.log_dir, level=os.environ.get("EPIC_PANDA_LOG_LEVEL", "INFO")))
        (etc / "panda_server.cfg").write_text(_SERVER_CFG.format(
            logdir=self.log_dir, cache=self.workdir / "cache", host=self.pg_host,
            port=self.pg_port, db=self.db_name, auth=auth, httpport=self.port,
            # the chain's pilots put outputs on the RSE, ePIC's adder registers them there;
            # one-cycle runs leave them in the pilot's directory: PanDA's dummy adder
            adder=ADDERS["epic" if self.chain else "dummy"]))
        (etc / "panda_jedi.cfg").write_text(jedi_cfg(self, daemon=False))

    def _wait_alive(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.port}/api/v1/system/is_alive"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                break
            try:
                if b"True" in urllib.request.urlopen(url, timeout=5).read():
                    return
            except OSError:
                time.sleep(0.5)
        log = (self.workdir / "gunicorn.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise PandaError("the local PanDA server did not come up",
                         why=f"no answer on {url} within {timeout_s:.0f} s; gunicorn says: {log}",
                         fix=f"read {self.log_dir} and {self.workdir / 'gunicorn.log'}")


# panda_common.cfg (PanDA's logger settings), shared by the loopback PanDA server and Harvester
COMMON_CFG = """[logger]
loghost=localhost
monport-apache=80
method=GET
encoding=url
loghost_new=localhost
monport-apache_new=8081
method_new=POST
encoding_new=json
monurlprefix=/logger/logger/query
logdir={logdir}
nemitters=1
migrated=True
log_level={level}
rotating_policy=none
rotating_backup_count=1
rotating_max_size=1024
rotating_interval=24
"""

_SERVER_CFG = """[server]
logdir={logdir}
loggername=epic
cache_dir={cache}
backend=postgres
dbhost={host}
dbport={port}
dbuser=panda
dbpasswd=
dbname={db}
nDBConnection=2
usedbtimeout=True
dbtimeout=60
schemaPANDA=DOMA_PANDA
schemaMETA=DOMA_PANDAMETA
schemaPANDAARCH=DOMA_PANDAARCH
schemaJEDI=DOMA_PANDA
schemaDEFT=DOMA_DEFT
pserverhost=127.0.0.1
pserverporthttp={httpport}
useJEDI=True
entryVerbose=False
token_authType=oidc
auth_config={auth}
legacy_token_issuers=
# sandboxes (prun's upload_cache_file) are kept in cache_dir; recording them is a call of
# the server to itself with its host certificate, which the loopback server has not
record_sandbox_info=False
# the VO's Adder plug-in: ePIC's registers outputs in Rucio (needs RUCIO_CONFIG)
adder_plugins=epic:{adder}
# ePIC's setupper: output/log files get their dataset's Rucio scope (the pilot's paths)
setupper_plugins=epic:epic_panda.setupper:EpicSetupperPlugin
[daemon]
enable=False
"""
