"""The one place where an epic-wfms installation is built from its configuration.

An ``Installation`` is what one process of an ePIC installation runs with: the bookkeeping
store, the message bus over the configured transport, the data management (DDM), the workload
executor of the configured WFMS (``wfms.backend``: the embedded worker slots or PanDA) and the
streaming orchestrator's roles on top of them. The embedded demo builds one installation with
every role; each agent of the services arrangement builds one with its own role; the monitor,
tests and benchmarks build theirs the same way. Nothing else constructs a backend.

    with Installation.build(config, roles=["ingest"], name="ingest@host:42") as inst:
        inst.start()
        ...
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from epic_wfms.daq import DaqSettings, DaqSimulator
    from epic_wfms.streaming.orchestrator import Orchestrator
    from epic_wfms.wfms.idds.client import IddsConnection
    from epic_wfms.wfms.panda.client import PandaConnection
    from epic_wfms.wfms.panda.prompt import PromptSettings

EXECUTOR_ROLES = frozenset({"process", "merge"})  # the roles that run jobs


def open_database(config: Config) -> Database:
    """The store, its schema brought to the latest revision."""
    private_directory(config.data_dir)  # user names, paths and keys live there
    db = Database(config.db_url)
    db.create_schema()
    return db


def build_transport(config: Config, client_id: str) -> Transport:
    if config.bus.transport == "inprocess":
        return InProcessTransport()
    return StompTransport(stomp_settings(config, client_id))


def stomp_settings(config: Config, client_id: str, namespace: str | None = None
                   ) -> StompSettings:
    """The configured broker, as ``client_id`` (also for other systems' topics: Rucio's
    events, iDDS's prompt service; ``namespace=""`` for destinations that are not ours)."""
    b = config.bus
    return StompSettings(
        host=b.host, port=b.port, user=b.user, password=b.password, vhost=b.vhost,
        namespace=b.namespace if namespace is None else namespace, client_id=client_id,
        heartbeat_ms=b.heartbeat_ms, prefetch=b.prefetch, queue_expiry_s=b.queue_expiry_s,
    )


def local_rses(config: Config) -> list[LocalRSE]:
    return [LocalRSE(r.name, r.site, r.type, config.rse_root(r.name))
            for r in config.rses]


def build_ddm(config: Config, db: Database) -> DataManagement:
    rses = local_rses(config)
    if config.ddm.backend == "rucio":
        from epic_wfms.ddm.rucio import RucioDDM  # rucio-clients loads only when chosen

        ddm = RucioDDM(config.ddm.rucio, [
            replace(rse, deterministic=rse.name != config.daq_rse) for rse in rses
        ])
        return ddm.listen(stomp_settings(config, "epic-wfms-rucio-events", namespace="")
                          ) if config.ddm.rucio.events else ddm
    return EmbeddedDDM(db, rses)


def build_panda_connection(config: Config) -> PandaConnection | None:
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


def check_streaming_on(config: Config) -> None:
    """Refuse what the streaming roles cannot honour with this configuration (the rest of
    the configuration, e.g. ``wfms.backend: panda`` for template submission, stands)."""
    if config.wfms.backend != "panda":
        return
    if config.ddm.backend != "rucio":
        raise ConfigurationError(
            "streaming on PanDA (wfms.backend: panda) needs ddm.backend: rucio",
            "JEDI reads the run's STFs from Rucio datasets and pilots stage them from Rucio RSEs",
            "set ddm.backend: rucio with the ddm.rucio server (docs/rucio.md)")
    if missing := [s.name for s in config.sites if s.name not in config.wfms.panda.queues]:
        raise ConfigurationError(
            f"wfms.panda.queues has no PanDA queue for {', '.join(missing)}",
            "each E1's prompt processing and merges run at its PanDA queue",
            "map each site to its queue, e.g. wfms.panda.queues: {E1_BNL: BNL_EPIC_PROMPT}")


def build_executor(config: Config, db: Database, owner: str | None = None
                   ) -> WorkloadExecutor:
    """Where this installation's jobs run (``wfms.backend``): the embedded worker slots, or
    the sites' PanDA queues (merges and gathers; STFs go through JEDI prompt tasks)."""
    if config.wfms.backend == "panda":
        from epic_wfms.wfms.panda.executor import PandaExecutor

        panda = config.wfms.panda
        connection = build_panda_connection(config)
        assert connection is not None
        return PandaExecutor(db, connection, {s.name: panda.queues[s.name] for s in config.sites},
                             poll_interval_s=panda.poll_interval_s, vo=panda.vo,
                             transformation=panda.transformation)
    from epic_wfms.wfms.embedded import LocalWorkerPool

    return LocalWorkerPool(db, {site.name: site.slots for site in config.sites},
                           runner=config.payload_runner, owner=owner)


def panda_prompt_access(config: Config) -> tuple[PandaConnection, PromptSettings] | None:
    """The PanDA server and the shape of the prompt tasks (``wfms.backend: panda``)."""
    connection = build_panda_connection(config)
    if connection is None:
        return None
    from epic_wfms.wfms.panda.prompt import PromptSettings

    panda = config.wfms.panda
    return connection, PromptSettings(
        queues={s.name: panda.queues[s.name] for s in config.sites},
        transformation=panda.transformation, container_image=panda.container_image,
        max_attempts=config.processing.retry.max_attempts,
        poll_interval_s=panda.poll_interval_s)


def build_idds_connection(config: Config) -> IddsConnection | None:
    """The configured iDDS server (``wfms.idds``) as an ``IddsConnection``; None without."""
    idds = config.wfms.idds
    if not idds.configured:
        return None
    from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings

    assert idds.token_file is not None  # the configuration requires it with a host
    try:
        token = idds.token_file.read_text().strip()
    except OSError as error:
        raise ConfigurationError(f"cannot read the iDDS token {idds.token_file}", str(error),
                                 "write the OIDC ID token there (or fix wfms.idds.token_file "
                                 "/ EPIC_IDDS_TOKEN_FILE)") from error
    return IddsConnection(IddsSettings(idds.host, token, vo=idds.vo))


def site_task_completion(config: Config):
    """How a rendered task is completed for this installation's PanDA queues, transformation
    and image (``wfms.panda``): ``taskparams.complete_for_site``."""
    from functools import partial

    from epic_wfms.wfms.panda.taskparams import complete_for_site

    panda = config.wfms.panda
    return partial(complete_for_site, queues=dict(panda.queues),
                   transformation=panda.transformation, container_image=panda.container_image)


def template_submitters(config: Config, db: Database) -> dict:
    """Where ``template submit`` sends remote targets in this installation: the rendered
    JEDI task parameters go to the configured PanDA server (``wfms.backend: panda``),
    completed with what DEFT/the server's user interface adds; the rendered workflow goes to
    the configured iDDS (``wfms.idds``) as a workflow of ``EpicPandaWork``s whose tasks are
    completed for the sites' PanDA queues (``wfms.panda``); otherwise only dry runs."""
    submitters: dict = {}
    connection = build_panda_connection(config)
    if connection is not None:
        from dataclasses import asdict

        from epic_wfms.wfms.panda.submit import submit_tasks
        from epic_wfms.wfms.panda.taskparams import complete_rendered

        submitters["panda"] = lambda tasks: [asdict(record) for record in submit_tasks(
            [complete_rendered(task) for task in tasks], connection, db)]
    if config.wfms.idds.configured:
        submitters["idds"] = idds_submitter(config)
    return submitters


def idds_submitter(config: Config):
    """``[spec]`` (the idds target's rendering, with the rendered workflow) -> the iDDS
    request: the workflow built for this installation's sites and submitted."""
    def submit(specs: list[dict]) -> dict:
        from epic_wfms.templates.schema import RenderedWorkflow
        from epic_wfms.templates.targets.idds import build_idds_workflow

        [spec] = specs
        rendered = RenderedWorkflow.model_validate(spec["rendered"])
        workflow = build_idds_workflow(rendered, site_task_completion(config))
        idds = build_idds_connection(config)
        assert idds is not None
        return {"request_id": idds.submit(workflow), "host": config.wfms.idds.host,
                "name": workflow.name}
    return submit


@dataclass
class Installation:
    """One process's view of an ePIC installation: its backends and its roles."""

    config: Config
    db: Database
    bus: MessageBus
    ddm: DataManagement
    executor: WorkloadExecutor | None
    roles: tuple[str, ...]
    name: str = "epic-wfms"
    orchestrator: Orchestrator | None = None
    _daqs: list[DaqSimulator] = field(default_factory=list)

    @classmethod
    def build(cls, config: Config, roles: Iterable[str] | None = None,
              name: str = "epic-wfms") -> Installation:
        """The backends ``config`` chooses, for ``roles`` (default: every streaming role;
        ``()`` for a process that only reads, publishes or plays the DAQ)."""
        from epic_wfms.streaming.orchestrator import ROLES, check_roles

        roles = tuple(ROLES if roles is None else roles)
        check_roles(roles)
        if EXECUTOR_ROLES & set(roles):
            check_streaming_on(config)
        db = open_database(config)
        try:
            bus = MessageBus(build_transport(config, name), StoreLedger(db))
            ddm = build_ddm(config, db)
            executor = (build_executor(config, db, owner=name) if EXECUTOR_ROLES & set(roles)
                        else None)
        except BaseException:
            db.dispose()
            raise
        return cls(config, db, bus, ddm, executor, roles, name)

    # ---- what runs on the backends ----------------------------------------------------
    def start(self) -> Orchestrator | None:
        """The orchestrator with this installation's roles, recovered and subscribed."""
        if not self.roles:
            return None
        from epic_wfms.streaming.context import StreamingContext
        from epic_wfms.streaming.orchestrator import Orchestrator

        role = self.roles[0] if len(self.roles) == 1 else "orchestrator"
        ctx = StreamingContext(self.config, self.db, self.bus, self.ddm, self.executor,
                               producer=f"epic-wfms.{role}",
                               panda=panda_prompt_access(self.config)
                               if "process" in self.roles else None)
        self.orchestrator = Orchestrator(ctx, roles=self.roles)
        self.orchestrator.start()
        return self.orchestrator

    def daq(self, settings: DaqSettings) -> DaqSimulator:
        """The E0 DAQ simulator writing into this installation's DAQ buffer (demo, tests)."""
        from epic_wfms.daq import DaqSimulator

        daq = DaqSimulator(self.bus, self.daq_buffer, self.config.daq_rse, settings)
        self._daqs.append(daq)
        return daq

    @property
    def daq_buffer(self) -> Path:
        return self.config.daq_buffer

    # ---- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the roles, then the executor (it runs what is queued), the bus, the DDM's
        listeners and the store's connections."""
        if self.orchestrator is not None:
            self.orchestrator.stop()
        if self.executor is not None:
            self.executor.shutdown()
        self.bus.close()
        self.ddm.close()
        self.db.dispose()

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
