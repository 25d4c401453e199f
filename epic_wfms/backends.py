"""The one place where backends are chosen from configuration."""

from __future__ import annotations

from dataclasses import dataclass, replace

from epic_wfms.bus import InProcessTransport, MessageBus
from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.bus.transport import Transport
from epic_wfms.config import Config
from epic_wfms.ddm import DataManagement, EmbeddedDDM, LocalRSE
from epic_wfms.errors import ConfigurationError
from epic_wfms.security.files import private_directory
from epic_wfms.store.database import Database
from epic_wfms.store.ledger import StoreLedger
from epic_wfms.wfms import WorkloadExecutor
from epic_wfms.wfms.embedded import LocalWorkerPool


@dataclass
class Backends:
    db: Database
    bus: MessageBus
    ddm: DataManagement
    executor: WorkloadExecutor | None

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
        self.bus.close()
        if close_ddm := getattr(self.ddm, "close", None):
            close_ddm()  # the Rucio backend's event listener
        self.db.dispose()


def open_database(config: Config) -> Database:
    private_directory(config.data_dir)  # user names, paths and keys live there
    db = Database(config.db_url)
    db.create_schema()
    return db


def build_transport(config: Config, client_id: str) -> Transport:
    if config.bus.transport == "inprocess":
        return InProcessTransport()
    b = config.bus
    return StompTransport(StompSettings(
        host=b.host, port=b.port, user=b.user, password=b.password, vhost=b.vhost,
        namespace=b.namespace, client_id=client_id, heartbeat_ms=b.heartbeat_ms,
        prefetch=b.prefetch, queue_expiry_s=b.queue_expiry_s,
    ))


def build_backends(
    config: Config, client_id: str = "epic-wfms", with_executor: bool = True
) -> Backends:
    """All backends as configured; agents that run no jobs pass ``with_executor=False``."""
    db = open_database(config)
    bus = MessageBus(build_transport(config, client_id), StoreLedger(db))
    executor = (
        LocalWorkerPool(db, {site.name: site.slots for site in config.sites},
                        runner=config.payload_runner)
        if with_executor else None
    )
    return Backends(db, bus, build_ddm(config, db), executor)


def build_panda_connection(config: Config):
    """The configured PanDA server as a ``PandaConnection`` (None on the embedded backend)."""
    if config.wfms.backend != "panda":
        return None
    from epic_wfms.wfms.panda.client import PandaConnection, PandaSettings

    panda = config.wfms.panda
    try:
        token = panda.token_file.read_text().strip()
    except OSError as error:
        raise ConfigurationError(f"cannot read the PanDA token {panda.token_file}", str(error),
                                 "write the OIDC ID token there (or fix wfms.panda.token_file)"
                                 ) from error
    return PandaConnection(PandaSettings(panda.url, token, panda.auth_vo, panda.verify_host))


def template_submitters(config: Config, db: Database) -> dict:
    """Where ``template submit`` sends remote targets in this installation: the rendered
    JEDI task parameters go to the configured PanDA server (``wfms.backend: panda``),
    completed with what DEFT/the server's user interface adds; otherwise only dry runs."""
    connection = build_panda_connection(config)
    if connection is None:
        return {}
    from dataclasses import asdict

    from epic_wfms.wfms.panda.submit import submit_tasks
    from epic_wfms.wfms.panda.taskparams import complete_rendered

    return {"panda": lambda tasks: [asdict(record) for record in submit_tasks(
        [complete_rendered(task) for task in tasks], connection, db)]}


def build_ddm(config: Config, db: Database) -> DataManagement:
    rses = [
        LocalRSE(r.name, r.site, r.type, (config.data_dir / "rses" / r.name).resolve())
        for r in config.rses
    ]
    if config.ddm.backend == "rucio":
        from epic_wfms.ddm.rucio import RucioDDM  # rucio-clients loads only when chosen

        ddm = RucioDDM(config.ddm.rucio, [
            replace(rse, deterministic=rse.name != config.daq_rse) for rse in rses
        ])
        return ddm.listen(config.bus) if config.ddm.rucio.events else ddm
    return EmbeddedDDM(db, rses)
