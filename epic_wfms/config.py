"""Configuration: one YAML file (optional) + ``EPIC_WFMS_*`` environment overrides.

Every field has a working default for the embedded backends; see docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from epic_wfms.errors import ConfigurationError
from epic_wfms.model.validation import describe_validation_error
from epic_wfms.statemachine.table import ALLOWED_READINESS

GateAction = Literal["process", "defer", "archive_only"]
DecisionPolicy = Literal["alternate", "both", "by_load", "by_fraction", "by_metadata", "single"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RseConfig(_Strict):
    name: str
    site: str
    type: Literal["DISK", "TAPE"]


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


class DecisionBoxConfig(_Strict):
    policy: DecisionPolicy = "alternate"
    fractions: dict[str, float] = Field(default_factory=dict)
    metadata_rules: list[MetadataRule] = Field(default_factory=list)
    single_site: str | None = None


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


class WfmsConfig(_Strict):
    """Where work executes: local worker slots (embedded) or PanDA/JEDI tasks."""

    backend: Literal["embedded", "panda"] = "embedded"
    panda: PandaConfig = Field(default_factory=PandaConfig)

    @model_validator(mode="after")
    def _panda_needs_a_server(self) -> WfmsConfig:
        if self.backend == "panda" and not (self.panda.url and self.panda.token_file):
            raise ValueError("wfms.backend panda needs wfms.panda.url and wfms.panda.token_file")
        return self


class FaultInjection(_Strict):
    """For demos and tests: make the first N reco attempts of given STF sequences fail."""

    reco_failures: dict[int, int] = Field(default_factory=dict)


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
    decision_box: DecisionBoxConfig = Field(default_factory=DecisionBoxConfig)
    processing: ProcessingConfig = Field(default_factory=ProcessingConfig)
    fault_injection: FaultInjection = Field(default_factory=FaultInjection)
    bus: BusConfig = Field(default_factory=BusConfig)
    wfms: WfmsConfig = Field(default_factory=WfmsConfig)
    payload_runner: Literal["standing", "subprocess"] = Field(
        default="standing",
        description="standing: each worker slot keeps a pilot process; subprocess: one per job",
    )

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
        return self

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
        target[key] = value


def load_config(path: Path | None = None, **overrides: object) -> Config:
    """Defaults < YAML file < environment (``EPIC_WFMS_*``) < explicit overrides."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigurationError(
                f"cannot read configuration {path}", str(error), "fix the file or omit --config"
            ) from error
    _apply_environment(data)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigurationError(
            "invalid configuration", describe_validation_error(error),
            "see docs/configuration.md for every field and its default",
        ) from error
