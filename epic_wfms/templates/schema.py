"""The template format (pydantic): parameters, steps, resources, conditions, loops, campaign.

Two layers: ``TemplateSpec`` is the file as written (steps and campaign still hold Jinja2
text); ``Step``/``Campaign``/``RenderedWorkflow`` are what rendering produces, fully typed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
TAG_KINDS = ("p", "e", "s", "r", "k")
TAG_KIND_NAMES = {"p": "physics", "e": "event generation", "s": "simulation",
                  "r": "reconstruction", "k": "background"}
ParamType = Literal["string", "integer", "number", "boolean", "list", "tag"]
UseCase = Literal["streaming_reco", "fast_monitoring", "first_pass_reco", "calibration",
                  "simulation", "reprocessing", "analysis", "ml_training", "base"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParameterSpec(_Strict):
    """One typed parameter as the physicist sees it (R6.3): the CLI help is built from it."""

    type: ParamType = "string"
    help: str = ""
    default: Any = None
    required: bool = False
    allowed: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    unit: str | None = None
    example: Any = Field(default=None, description="value used by `template validate`")
    tag_kind: Literal["p", "e", "s", "r", "k"] | None = None
    items: Literal["string", "integer", "number"] = "string"

    @model_validator(mode="after")
    def _coherent(self) -> ParameterSpec:
        if self.type == "tag" and self.tag_kind is None:
            raise ValueError("a parameter of type 'tag' needs tag_kind (one of p, e, s, r, k)")
        if self.required and self.default is not None:
            raise ValueError("a required parameter has no default")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        return self


class TemplateSpec(_Strict):
    """A template file after include/extends are merged, before rendering."""

    template: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    use_case: UseCase
    description: str = ""
    abstract: bool = False
    extends: str | None = None
    include: list[str] = Field(default_factory=list)
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    campaign: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(default_factory=list)


# ---------------------------------------------------------------- rendered workflow


class Payload(_Strict):
    """What runs: a container image from the ePIC registry and a command inside it (R9.3)."""

    # an image reference (optionally with a scheme): never an option of docker or apptainer
    image: str = Field(pattern=r"^(?:[a-z][a-z0-9+.\-]*://)?[A-Za-z0-9][A-Za-z0-9._/:@+\-]*$",
                       max_length=500)
    command: str = Field(min_length=1)
    software: dict[str, str] = Field(default_factory=dict)
    origin: Literal["standard", "user"] = "standard"
    source: str | None = Field(default=None, description="user payloads: repo@commit (R9.2)")

    @model_validator(mode="after")
    def _traceable(self) -> Payload:
        if self.origin == "user" and not self.source:
            raise ValueError("a user (non-standard) payload needs 'source' (repository@commit) "
                             "so its use can be traced (R9.2)")
        return self


class Output(_Strict):
    datatype: str = Field(pattern=NAME_PATTERN)
    file: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    dataset: str = ""  # filled by the naming rule


class Input(_Strict):
    """An upstream step's output (``from``) or an external dataset (``dataset``)."""

    from_: str | None = Field(default=None, alias="from")
    datatype: str | None = None
    dataset: str | None = None
    role: Literal["primary", "secondary"] = "primary"
    files_per_job: int | None = Field(default=None, ge=1)
    datasets: list[str] = Field(default_factory=list)  # resolved names

    @model_validator(mode="after")
    def _one_source(self) -> Input:
        if (self.from_ is None) == (self.dataset is None):
            raise ValueError("an input names exactly one of 'from' (a step) or 'dataset'")
        return self


class Resources(_Strict):
    cores: int = Field(default=1, ge=1, le=256)
    memory_mb: int = Field(default=2000, ge=100, le=1_000_000, description="per core")
    gpus: int = Field(default=0, ge=0, le=16)
    arch: Literal["x86_64", "aarch64"] = "x86_64"
    walltime_min: int = Field(default=60, ge=1, le=7 * 24 * 60)


class Condition(_Strict):
    """A gate on a step (R6.2); exactly one kind per entry."""

    input_ready: str | None = Field(default=None, description="dataset name or upstream step")
    min_files: int = Field(default=1, ge=1)
    upstream_validated: str | None = None
    calibration_ready: str | None = Field(default=None, description="calibration step")

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [k for k in ("input_ready", "upstream_validated", "calibration_ready")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a condition has exactly one of input_ready, upstream_validated, "
                             "calibration_ready")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("input_ready", "upstream_validated", "calibration_ready")
                    if getattr(self, k) is not None)

    @property
    def subject(self) -> str:
        return str(getattr(self, self.kind))


class Loop(_Strict):
    """Repeat a step until ``check`` exits 0 (converged), at most ``max_iterations`` times."""

    check: str = Field(min_length=1)
    max_iterations: int = Field(ge=1, le=100)
    on_exhausted: Literal["fail", "accept"] = "fail"
    tolerance: float | None = Field(
        default=None, gt=0, description="converged when the residual the payload reports "
        "(jobReport.json) is at most this: what iDDS decides the loop on (the target idds "
        "needs it; the local runner runs ``check``)")


class Step(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    payload: Payload
    inputs: list[Input] = Field(default_factory=list)
    outputs: list[Output] = Field(min_length=1)
    resources: Resources = Field(default_factory=Resources)
    after: list[str] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)
    loop: Loop | None = None
    validate_cmd: str | None = Field(default=None, alias="validate")
    jobs: int = Field(default=1, ge=1, le=1_000_000, description="jobs of a step without input")
    events_per_job: int | None = Field(default=None, ge=1)
    sites: list[str] = Field(default_factory=list)
    excluded_sites: list[str] = Field(default_factory=list)
    foreach: str | None = Field(default=None, description="list parameter to scatter over")
    depends_on: list[str] = Field(default_factory=list)  # resolved: after + input producers


class Retry(_Strict):
    mode: Literal["failed_parts", "whole_task"] = "failed_parts"
    max_attempts: int = Field(default=3, ge=1, le=50)


class DynamicPriority(_Strict):
    boost_per_day: int = Field(default=0, ge=0)
    max: int = Field(default=1000, ge=0, le=5000)


class Expedite(_Strict):
    preferred_sites: list[str] = Field(default_factory=list)
    job_cloning: Literal["runonce", "storeonce"] | None = None
    clones: int = Field(default=2, ge=2, le=10)


class Campaign(_Strict):
    """Campaign management (R7): grouping, priority, shares, retry, expediting."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    activity: Literal["production", "analysis"] = "production"
    user: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    working_group: str | None = None
    priority: int = Field(default=500, ge=0, le=5000)
    dynamic_priority: DynamicPriority | None = None
    share: str | None = None
    selector: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")
    retry: Retry = Field(default_factory=Retry)
    expedite: Expedite = Field(default_factory=Expedite)
    sites: list[str] = Field(default_factory=list)
    excluded_sites: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _analysis_has_user(self) -> Campaign:
        if self.activity == "analysis" and not self.user:
            raise ValueError("an analysis campaign needs 'user' (the owner of the datasets)")
        return self

    @property
    def prod_source_label(self) -> str:
        """PanDA's label: managed for collaboration production, user for analysis."""
        return "user" if self.activity == "analysis" else "managed"


class RenderedWorkflow(_Strict):
    """Everything needed to reproduce a submission (R1.12): stored with every submission."""

    template: str
    template_version: str
    template_hash: str
    use_case: str
    parameters: dict[str, Any]
    tags: dict[str, dict[str, Any]] = Field(default_factory=dict)
    campaign: Campaign
    steps: list[Step]
    rendered_hash: str = ""

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)
