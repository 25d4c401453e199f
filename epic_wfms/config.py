"""Configuration: one YAML file (optional) + ``EPIC_WFMS_*`` environment overrides.

Every field has a working default for the embedded backends; see docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from string import Formatter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from epic_wfms.errors import ConfigurationError
from epic_wfms.model.validation import describe_validation_error
from epic_wfms.monitor.settings import (  # noqa: F401 (re-exported: config.IssuerConfig, ...)
    IssuerConfig,
    MonitorConfig,
    NotificationRule,
    Role,
)
from epic_wfms.statemachine.table import ALLOWED_READINESS
from epic_wfms.yamlfile import read_yaml_mapping

GateAction = Literal["process", "defer", "archive_only"]
DecisionPolicy = Literal["alternate", "both", "by_load", "by_fraction", "by_metadata", "single"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # numbers are finite


class RseConfig(_Strict):
    name: str
    site: str
    type: Literal["DISK", "TAPE"]
    root: Path | None = Field(
        default=None, description="directory of this local-disk RSE; default "
        "<data_dir>/rses/<name> (for the DAQ buffer: where the DAQ writes its STF files)",
    )


class SiteConfig(_Strict):
    """An E1 site as the streaming layer sees it (full site_configs/ come with brokerage)."""

    name: str = Field(description="E1 site name as in the testbed, e.g. E1_BNL")
    disk_rse: str
    tape_rse: str
    slots: int = Field(default=2, gt=0)


class MetadataRule(_Strict):
    """Route STFs whose DAQ metadata ``field`` equals ``equals`` to ``sites``."""

    field: str
    equals: str | int | float | bool
    sites: list[str] = Field(min_length=1)


class SiteHealthConfig(_Strict):
    """When an E1 is avoided for its jobs' failures (brokerage/health.py): within
    ``window_s`` at least ``min_failures`` jobs failed, at least ``failure_ratio`` of its job
    ends; it gets no new STFs for ``backoff_s`` (doubling while it keeps failing, up to
    ``max_backoff_s``), then is tried again."""

    window_s: float = Field(default=300.0, gt=0)
    min_failures: int = Field(default=5, ge=1)
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    backoff_s: float = Field(default=600.0, gt=0)
    max_backoff_s: float = Field(default=4 * 3600.0, gt=0)


class DecisionBoxConfig(_Strict):
    """How STFs are routed to the E1s: the butterfly balancer with fail-over, aiming at what
    ``policy`` says (docs/configuration.md#decision_box)."""

    policy: DecisionPolicy = "alternate"
    fractions: dict[str, float] = Field(default_factory=dict)
    metadata_rules: list[MetadataRule] = Field(default_factory=list)
    single_site: str | None = None
    health: SiteHealthConfig = Field(default_factory=SiteHealthConfig)

    @model_validator(mode="after")
    def _policy_settings(self) -> DecisionBoxConfig:
        """Shares the balancer cannot aim at are refused, with what to set."""
        if self.fractions and (any(f < 0 for f in self.fractions.values())
                               or not sum(self.fractions.values()) > 0):
            raise ValueError("decision_box.fractions must be >= 0 with a positive sum, e.g. "
                             "{E1_BNL: 0.7, E1_JLAB: 0.3}")
        return self


class RetryPolicy(_Strict):
    max_attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=0.2, ge=0)


class ProcessingConfig(_Strict):
    gate: dict[str, GateAction] = Field(
        default_factory=lambda: {
            "run/physics": "process",
            "run/standby": "defer",
            "calib/*": "process",
            "test/*": "archive_only",
            "beam/*": "archive_only",
            "no_beam/*": "archive_only",
            "off/*": "archive_only",
        },
        description="'state/substate' or 'state/*' -> what to do with STFs captured there",
    )
    merge_every: int = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _gate_covers_every_state(self) -> ProcessingConfig:
        """Refuse at load time a gate that leaves a legal state/substate undecided."""
        missing = [
            f"{state.value}/{readiness.value}"
            for state, allowed in ALLOWED_READINESS.items() for readiness in sorted(allowed)
            if f"{state.value}/*" not in self.gate
            and f"{state.value}/{readiness.value}" not in self.gate
        ]
        if missing:
            raise ValueError(
                f"processing.gate decides nothing for {', '.join(missing)}; add them (or "
                "'<state>/*') with process, defer or archive_only"
            )
        return self
    idle_suspend_s: float = Field(default=5.0, gt=0)
    missing_grace_s: float = Field(
        default=30.0, ge=0, description="wait this long after end_run for late STFs"
    )
    dead_letter_hold_s: float = Field(
        default=3600.0, ge=0, description="a closed run with dead letters waits this long "
        "after end_run for them to be replayed or discarded before it is finalized",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class BusConfig(_Strict):
    """Message transport: in-process (embedded) or a STOMP broker (ActiveMQ; RabbitMQ locally)."""

    transport: Literal["inprocess", "stomp"] = "inprocess"
    host: str = "127.0.0.1"
    port: int = 61613
    user: str = "guest"
    password: str = "guest"
    vhost: str = Field(default="/", description="STOMP 'host' header (RabbitMQ: its vhost)")
    namespace: str = Field(default="", description="prefix of every destination name")
    heartbeat_ms: int = Field(default=10_000, ge=0)
    prefetch: int = Field(default=8, gt=0)
    queue_expiry_s: float | None = Field(
        default=None, gt=0,
        description="drop a subscription's queue after this long unused (tests, demos); "
        "None in production",
    )


class PandaConfig(_Strict):
    """A PanDA server reached with panda-client (docs/panda-idds.md)."""

    url: str = Field(default="", description="e.g. https://pandaserver.example/server/panda")
    auth_vo: str = Field(default="epic.production", description="token Origin: VO[.role]")
    token_file: Path | None = Field(default=None, description="file holding the OIDC ID token")
    verify_host: bool = True
    vo: str = "epic"
    queues: dict[str, str] = Field(
        default_factory=lambda: {"E1_BNL": "BNL_EPIC_PROMPT", "E1_JLAB": "JLAB_EPIC_PROMPT"},
        description="E1 site -> the PanDA queue its prompt processing and merges run at")
    transformation: str = Field(
        default="epic-reco", description="transPath of ePIC's jobs: what the pilot runs with "
        "the job's command line as arguments")
    container_image: str | None = Field(
        default="docker://eicweb/eic_xl:nightly", description="image the jobs run in; None: "
        "the worker node's environment")
    poll_interval_s: float = Field(default=2.0, gt=0,
                                   description="how often PanDA's jobs are read back")


class IddsConfig(_Strict):
    """An iDDS server reached with idds-client (docs/panda-idds.md#idds): where
    ``template submit --target idds`` sends conditional workflows. Unset ``host``: no iDDS
    in this installation (``--target idds`` is a dry run). ``EPIC_IDDS_HOST`` and
    ``EPIC_IDDS_TOKEN_FILE`` override ``host`` and ``token_file`` (as for ``epic-wfms idds``)."""

    host: str = Field(default="", description="iDDS REST URL, e.g. "
                      "https://idds.example.org:443/idds")
    token_file: Path | None = Field(default=None, description="file holding the OIDC ID token "
                                    "of the VO (the request's owner is the token's identity)")
    vo: str = Field(default="epic", description="the token's VO")

    @model_validator(mode="after")
    def _host_needs_a_token(self) -> IddsConfig:
        if self.host and not self.token_file:
            raise ValueError("wfms.idds.host needs wfms.idds.token_file (iDDS refuses requests "
                             "without an OIDC token): give the token file's path, or set "
                             "EPIC_IDDS_TOKEN_FILE")
        if self.host and not self.host.startswith(("http://", "https://")):
            raise ValueError(f"wfms.idds.host {self.host!r} is not a URL: write it like "
                             "https://idds.example.org:443/idds")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.host)


class WfmsConfig(_Strict):
    """Where work executes: local worker slots (embedded) or PanDA/JEDI tasks; and the iDDS
    server conditional workflows go to (``idds``, optional)."""

    backend: Literal["embedded", "panda"] = "embedded"
    panda: PandaConfig = Field(default_factory=PandaConfig)
    idds: IddsConfig = Field(default_factory=IddsConfig)

    @model_validator(mode="after")
    def _panda_needs_a_server(self) -> WfmsConfig:
        if self.backend == "panda" and not (self.panda.url and self.panda.token_file):
            raise ValueError("wfms.backend panda needs wfms.panda.url and wfms.panda.token_file")
        return self


class FaultInjection(_Strict):
    """For demos and tests: make the first N reco attempts of given STF sequences fail."""

    reco_failures: dict[int, int] = Field(default_factory=dict)


class IddsPoolConfig(_Strict):
    """Where the fast path's workers run when iDDS's prompt service provisions them: the
    PanDA task iDDS makes at ``run_imminent`` (docs/fastpath.md#the-pool-through-idds)."""

    site: str = Field(default="E1_BNL", description="E1 whose PanDA queue runs the workers "
                      "(wfms.panda.queues names the queue; the E1 is the task's PanDA site)")
    transformation: str = Field(
        default="epic-fastpath", description="transPath of the worker jobs: the site's wrapper "
        "that runs `python -m epic_wfms.fastpath.pilot_worker` with the job's arguments")
    prompt_topic: str = Field(default="/topic/panda.workflow",
                              description="where iDDS's prompt service takes requests")
    reply_topic: str = Field(default="/topic/panda.workers",
                             description="where iDDS's prompt service answers")
    processing_type: str = "epic_fastpath"
    cores: int = Field(default=1, ge=1)
    memory_per_core_mb: int = Field(default=2000, ge=1)
    walltime_s: int = Field(default=12 * 3600, gt=0)
    idle_timeout_s: int = Field(default=600, gt=0,
                                description="a worker given no slice this long exits")
    broker_vhost: str | None = Field(
        default=None, description="STOMP virtual host of the broker iDDS listens on; None: "
        "bus.vhost (RabbitMQ: iDDS's clients name the broker's host as vhost)")
    adjust_applies_count: bool = Field(
        default=False, description="iDDS applies adjust_worker's worker count; false for "
        "iDDS 2.6.21, which drops it: the pool then adds workers with a request of their own")


class FastPathPoolConfig(_Strict):
    """Standing worker pool of the fast path (the testbed's ``target_worker_count``)."""

    min: int = Field(default=1, ge=1)
    max: int = Field(default=4, ge=1)
    target: int = Field(default=2, ge=1, description="workers provisioned at run_imminent")
    provider: Literal["embedded", "idds"] = Field(
        default="embedded", description="embedded: workers in the fast-path process; idds: "
        "pilot jobs provisioned through iDDS's prompt service and Harvester")
    idds: IddsPoolConfig = Field(default_factory=IddsPoolConfig)
    heartbeat_s: float = Field(default=2.0, gt=0,
                               description="how often a pilot-job worker says it is alive")
    lost_after_s: float = Field(default=20.0, gt=0,
                                description="a pilot-job worker silent this long is dead")
    provision_timeout_s: float = Field(
        default=30.0, gt=0, description="how long the demo's run control waits after "
        "run_imminent for the pool to be up (pilot jobs take longer than local workers)")

    @model_validator(mode="after")
    def _ordered(self) -> FastPathPoolConfig:
        if not self.min <= self.target <= self.max:
            raise ValueError(
                f"fastpath.pool needs min <= target <= max, got min={self.min} "
                f"target={self.target} max={self.max}"
            )
        return self


class FastPathPayloadConfig(_Strict):
    """What the slice payload does (docs/fastpath.md#payload)."""

    calibration_channels: int = Field(default=65536, gt=0, le=65536)
    extra_cost_s: float = Field(
        default=0.0, ge=0, description="simulated extra work per slice (heavier reconstruction)"
    )
    saturation_fraction: float = Field(
        default=0.5, gt=0, le=1, description="event alarm: this fraction of hits saturated"
    )
    hot_channel_hits: int = Field(default=8, gt=1,
                                  description="status alarm: one channel with this many hits")


class FastPathConfig(_Strict):
    """Fast processing path: TF slices on a standing worker pool (docs/fastpath.md)."""

    enabled: bool = True
    sample_fraction: float = Field(default=1.0, gt=0, le=1,
                                   description="fraction of STFs whose TF sample is sliced")
    select: list[str] = Field(
        default_factory=lambda: ["run/physics", "calib/*"],
        description="'state/substate' or 'state/*' in which sampled STFs were captured",
    )
    slice_tfs: int = Field(default=5, gt=0, description="TFs per TF slice")
    express_tfs: int = Field(default=2, ge=0,
                             description="TFs of each sample checked on the express lane (0: off)")
    pool: FastPathPoolConfig = Field(default_factory=FastPathPoolConfig)
    runner: Literal["standing", "per_slice"] = Field(
        default="standing", description="standing payload process per worker, or one per slice"
    )
    latency_target_s: float = Field(default=1.0, gt=0)
    scale_cooldown_s: float = Field(default=2.0, ge=0)
    shrink_idle_s: float = Field(default=3.0, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    slice_timeout_s: float = Field(default=60.0, gt=0)
    drain_grace_s: float = Field(default=1.0, ge=0,
                                 description="after end_run, wait this long for late samples")
    payload: FastPathPayloadConfig = Field(default_factory=FastPathPayloadConfig)

    @model_validator(mode="after")
    def _select_names_real_states(self) -> FastPathConfig:
        legal = {f"{state.value}/*" for state in ALLOWED_READINESS} | {
            f"{state.value}/{readiness.value}"
            for state, allowed in ALLOWED_READINESS.items() for readiness in allowed}
        if unknown := [key for key in self.select if key not in legal]:
            raise ValueError(
                f"fastpath.select names no detector state: {', '.join(unknown)}; use "
                f"'state/substate' or 'state/*' from: {', '.join(sorted(legal))}")
        return self


class RucioConfig(_Strict):
    """Connection and policy of the Rucio DDM backend (docs/rucio.md)."""

    host: str = Field(default="http://127.0.0.1:8080", description="Rucio server URL")
    auth_host: str | None = Field(default=None, description="auth server; None = host")
    account: str = "root"
    auth_type: Literal["userpass", "x509", "x509_proxy", "oidc", "gss", "ssh"] = "userpass"
    username: str | None = None
    password: str | None = None
    ca_cert: str | None = None
    vo: str = "def"
    scope: str = Field(default="epic", description="scope of every ePIC streaming DID")
    period: str = Field(default="testbed", description="run period: container of run datasets")
    archive_lifetime_s: int | None = Field(default=None, description="None: archive forever")
    processing_lifetime_s: int = Field(default=7 * 86400, gt=0)
    transfers: Literal["rucio", "local_copy"] = Field(
        default="rucio",
        description="rucio: a transfer service (FTS) completes rules; local_copy: this process "
        "copies between POSIX RSEs, verifies adler32 and marks the replica available",
    )
    events: bool = Field(default=False, description="follow Rucio's events on the bus broker")
    events_destination: str = "/topic/rucio.events"
    event_wait_s: float = Field(default=60.0, gt=0, description="wait for a rule before failing")
    server_venv: Path = Field(
        default=Path(".venv-rucio"), description="virtualenv of the private Rucio server that "
        "demo --ddm rucio starts when no server is configured (created on first use)",
    )


LocalityMode = Literal["replicate", "remote"]


class DdmConfig(_Strict):
    backend: Literal["embedded", "rucio"] = "embedded"
    rucio: RucioConfig = Field(default_factory=RucioConfig)
    locality: dict[str, LocalityMode] = Field(
        default_factory=lambda: {"reco": "replicate", "merge": "replicate"},
        description="per workflow: replicate (rule to the site's disk first) or remote "
        "(read the input where it is)",
    )
    outputs_to: str | None = Field(
        default=None, description="RSE expression outputs move to, by rule, after being "
        "written to the site's disk; None keeps them there",
    )
TESTBED_PATH_FIELDS = ("run_id", "dataset", "filename", "namespace")


class TestbedConfig(_Strict):
    """How the ePIC streaming testbed's messages are followed (docs/messages.md#testbed)."""

    namespace: str = Field(
        default="", description="the testbed namespace this installation follows (its "
        "testbed.toml [testbed] namespace); messages of other namespaces are ignored; '' "
        "follows only messages without a namespace",
    )
    stf_path: str = Field(
        default="{dataset}/{filename}", description="where an announced STF file is, relative "
        "to the DAQ buffer; fields: " + ", ".join(f"{{{f}}}" for f in TESTBED_PATH_FIELDS),
    )
    file_grace_s: float = Field(
        default=60.0, ge=0, description="an announced STF file that has not appeared after "
        "this long is reported missing",
    )
    timezone: str = Field(
        default="local", description="time zone of the testbed's timestamps (they carry "
        "none): an IANA name such as America/New_York, UTC, or local (this host's)",
    )

    @model_validator(mode="after")
    def _checked(self) -> TestbedConfig:
        from epic_wfms.model.testbed_time import zone

        zone(self.timezone)  # an unknown zone is refused here, not at the first message
        fields = {name for _text, name, _spec, _conv in Formatter().parse(self.stf_path) if name}
        if unknown := fields - set(TESTBED_PATH_FIELDS):
            raise ValueError(f"testbed.stf_path uses unknown fields {sorted(unknown)}; "
                             f"known: {', '.join(TESTBED_PATH_FIELDS)}")
        path = Path(self.stf_path)
        if path.is_absolute() or ".." in path.parts or not self.stf_path.strip():
            raise ValueError(f"testbed.stf_path {self.stf_path!r} must be a relative path "
                             "inside the DAQ buffer (no leading '/', no '..')")
        return self


class Config(_Strict):
    data_dir: Path = Path(".epic-wfms")
    database_url: str | None = None
    daq_rse: str = "DAQ_BUFFER"
    rses: list[RseConfig] = Field(default_factory=lambda: [
        RseConfig(name="DAQ_BUFFER", site="E0_EIC", type="DISK"),
        RseConfig(name="BNL_DISK", site="E1_BNL", type="DISK"),
        RseConfig(name="BNL_TAPE", site="E1_BNL", type="TAPE"),
        RseConfig(name="JLAB_DISK", site="E1_JLAB", type="DISK"),
        RseConfig(name="JLAB_TAPE", site="E1_JLAB", type="TAPE"),
    ])
    sites: list[SiteConfig] = Field(default_factory=lambda: [
        SiteConfig(name="E1_BNL", disk_rse="BNL_DISK", tape_rse="BNL_TAPE"),
        SiteConfig(name="E1_JLAB", disk_rse="JLAB_DISK", tape_rse="JLAB_TAPE"),
    ])
    site_catalogue: Path | None = Field(
        default=None, description="folder of the site YAML files the E1s are taken from "
        "(queues, storage, links); None: the catalogue shipped with epic-wfms")
    decision_box: DecisionBoxConfig = Field(default_factory=DecisionBoxConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    fault_injection: FaultInjection = Field(default_factory=FaultInjection)
    bus: BusConfig = Field(default_factory=BusConfig)
    ddm: DdmConfig = Field(default_factory=DdmConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    wfms: WfmsConfig = Field(default_factory=WfmsConfig)
    payload_runner: Literal["standing", "subprocess"] = Field(
        default="standing",
        description="standing: each worker slot keeps a pilot process; subprocess: one per job",
    )
    fastpath: FastPathConfig = Field(default_factory=FastPathConfig)
    testbed: TestbedConfig = Field(default_factory=TestbedConfig)

    @model_validator(mode="after")
    def _references(self) -> Config:
        rses = {r.name for r in self.rses}
        sites = {s.name for s in self.sites}
        for site in self.sites:
            for rse in (site.disk_rse, site.tape_rse):
                if rse not in rses:
                    raise ValueError(
                        f"site {site.name} uses RSE {rse!r} not in rses {sorted(rses)}"
                    )
        named = set(self.decision_box.fractions) | {
            s for rule in self.decision_box.metadata_rules for s in rule.sites
        }
        if self.decision_box.single_site:
            named.add(self.decision_box.single_site)
        if unknown := named - sites:
            raise ValueError(
                f"decision_box names unknown sites {sorted(unknown)}; known {sorted(sites)}"
            )
        if self.daq_rse not in rses:
            raise ValueError(f"daq_rse {self.daq_rse!r} is not in rses {sorted(rses)}")
        pool = self.fastpath.pool
        if pool.provider == "idds":
            if self.bus.transport != "stomp":
                raise ValueError("fastpath.pool.provider idds needs bus.transport: stomp (the "
                                 "workers run as pilot jobs and take slices over the broker)")
            if pool.idds.site not in self.wfms.panda.queues:
                raise ValueError(f"fastpath.pool.idds.site {pool.idds.site!r} has no PanDA "
                                 f"queue: set wfms.panda.queues.{pool.idds.site}")
        return self

    def rse_root(self, name: str) -> Path:
        """Directory of a local-disk RSE: its configured ``root`` or <data_dir>/rses/<name>."""
        rse = next((r for r in self.rses if r.name == name), None)
        root = rse.root if rse is not None and rse.root is not None else (
            self.data_dir / "rses" / name)
        return root.resolve()

    @property
    def daq_buffer(self) -> Path:
        """Where the DAQ writes STF files: the DAQ buffer RSE's directory."""
        return self.rse_root(self.daq_rse)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'bookkeeping.sqlite'}"

    def site(self, name: str) -> SiteConfig:
        for site in self.sites:
            if site.name == name:
                return site
        raise ConfigurationError(f"unknown site {name!r}", f"sites: {[s.name for s in self.sites]}")


ENV_PREFIX = "EPIC_WFMS_"
POSTGRES_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _apply_environment(data: dict) -> None:
    """``EPIC_WFMS_DATA_DIR`` sets data_dir; ``EPIC_WFMS_BUS__HOST`` sets bus.host, etc."""
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX) or not value or name.startswith("EPIC_WFMS_TEST_"):
            continue
        *sections, key = name.removeprefix(ENV_PREFIX).lower().split("__")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigurationError(
                    f"{name} sets a field inside {section!r}", f"{section!r} is not a section "
                    f"(its value is a {type(target).__name__})",
                    "fix the configuration file or unset the variable")
        target[key] = value
    # the variables ``epic-wfms idds`` reads: one iDDS server for both ways in
    for name, key in IDDS_ENVIRONMENT.items():
        if os.environ.get(name):
            wfms = data.setdefault("wfms", {})
            if not isinstance(wfms, dict) or not isinstance(wfms.setdefault("idds", {}), dict):
                raise ConfigurationError(f"{name} sets wfms.idds.{key}",
                                         "wfms or wfms.idds is not a section",
                                         "fix the configuration file or unset the variable")
            wfms["idds"][key] = os.environ[name]


IDDS_ENVIRONMENT = {"EPIC_IDDS_HOST": "host", "EPIC_IDDS_TOKEN_FILE": "token_file"}


def load_config(path: Path | None = None, **overrides: object) -> Config:
    """Defaults < YAML file < environment (``EPIC_WFMS_*``; ``EPIC_IDDS_HOST`` and
    ``EPIC_IDDS_TOKEN_FILE`` for wfms.idds) < explicit overrides."""
    data: dict = {}
    if path is not None:
        data = read_yaml_mapping(path, ConfigurationError, "configuration",
                                 "a configuration is a YAML mapping of the fields in "
                                 "docs/configuration.md; fix the file or omit --config")
    _apply_environment(data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid configuration", describe_validation_error(error),
            "see docs/configuration.md for every field and its default",
        ) from error
