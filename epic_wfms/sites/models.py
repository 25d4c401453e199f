"""Pydantic models of one site file. Strict: unknown keys are errors that list the allowed ones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Echelon = Literal["E1", "E2"]
BatchSystem = Literal["htcondor", "slurm", "kubernetes", "pbs"]
Arch = Literal["x86_64", "aarch64"]
FacilityKind = Literal["lab", "grid", "hpc", "cloud", "osg"]
WorkflowClass = Literal[
    "streaming", "calibration", "reconstruction", "reprocessing", "simulation", "analysis", "ml"
]

#: How critical each workflow class is (R8.4a). Critical and high classes need pledged
#: resources (an opportunistic slot can vanish under them); streaming needs an E1.
CRITICALITY: dict[str, str] = {
    "streaming": "critical",
    "calibration": "high",
    "reconstruction": "high",
    "reprocessing": "normal",
    "analysis": "normal",
    "simulation": "low",
    "ml": "low",
}
OPPORTUNISTIC_OK = frozenset(c for c, level in CRITICALITY.items() if level == "low")


class _Strict(BaseModel):
    # numbers are finite: '.inf' hours or '.nan' cores would break every computation later
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StorageElement(_Strict):
    """A Rucio storage element (RSE) of the site."""

    rse: str = Field(pattern=r"^[A-Z0-9_]+$", description="Rucio RSE name, e.g. BNL_DISK")
    type: Literal["DISK", "TAPE"]
    capacity_tb: float = Field(gt=0)


class Link(_Strict):
    """A network link from this site to another (symmetric unless both ends say otherwise)."""

    to: str
    gbps: float = Field(gt=0, description="usable bandwidth in Gbit/s")


class HarvesterQueue(_Strict):
    """What the Harvester generator needs beyond the batch system (all optional)."""

    schedd: str | None = Field(default=None, description="HTCondor schedd host")
    partition: str | None = Field(default=None, description="Slurm partition")
    account: str | None = Field(default=None, description="Slurm/HPC allocation account")
    namespace: str | None = Field(default=None, description="Kubernetes namespace")
    standing_pool: int = Field(
        default=0, ge=0, description="target size of the standing streaming worker pool (R3.9)"
    )


class Queue(_Strict):
    """One PanDA queue (Harvester queue) of a site."""

    name: str = Field(pattern=r"^[A-Z0-9_]+$")
    batch_system: BatchSystem
    cores: int = Field(gt=0, description="cores the queue may use at once")
    cores_per_node: int = Field(gt=0)
    memory_per_core_gb: float = Field(gt=0)
    arch: Arch = "x86_64"
    gpus_per_node: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    max_walltime_h: float = Field(gt=0)
    max_queued: int = Field(default=1000, ge=0, description="jobs waiting in the batch system")
    workflow_classes: list[WorkflowClass] = Field(min_length=1)
    pledged: bool | None = Field(
        default=None, description="None: as the site; False: opportunistic (may be preempted)"
    )
    express_reserve: float = Field(
        default=0.0, ge=0, le=0.5, description="fraction of cores kept free for express work"
    )
    harvester: HarvesterQueue = Field(default_factory=HarvesterQueue)

    @model_validator(mode="after")
    def _gpu_model_needs_gpus(self) -> Queue:
        if self.gpu_model and not self.gpus_per_node:
            raise ValueError("gpu_model is set but gpus_per_node is 0; set gpus_per_node >= 1")
        if self.cores_per_node > self.cores:
            raise ValueError(f"cores_per_node {self.cores_per_node} > cores {self.cores}")
        return self

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * (self.cores // self.cores_per_node)


class Site(_Strict):
    """One ePIC computing facility (E1 or E2)."""

    name: str = Field(pattern=r"^E[12]_[A-Z0-9_]+$", description="e.g. E1_BNL, E2_NERSC")
    echelon: Echelon
    institution: str
    country: str = Field(min_length=2, max_length=2, description="ISO 3166 alpha-2")
    kind: FacilityKind
    pledged: bool = Field(description="pledged resources (True) or opportunistic (False)")
    storage: list[StorageElement] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    shares: dict[WorkflowClass, float] = Field(
        default_factory=dict, description="target fraction of the site's cores per class"
    )
    queues: list[Queue] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Site:
        if self.echelon != self.name[:2]:
            raise ValueError(f"echelon {self.echelon} does not match the name {self.name}")
        names = [q.name for q in self.queues]
        if len(set(names)) != len(names):
            raise ValueError(f"queue names repeat: {sorted(names)}")
        total = sum(self.shares.values())
        if total > 1.0 + 1e-9 or any(v < 0 for v in self.shares.values()):
            raise ValueError(f"shares must be >= 0 and sum to <= 1, got sum {total:.3f}")
        runnable = {c for q in self.queues for c in q.workflow_classes}
        if unused := set(self.shares) - runnable:
            raise ValueError(
                f"shares name classes no queue runs: {sorted(unused)}; "
                f"queues run {sorted(runnable)}"
            )
        for queue in self.queues:
            self._check_criticality(queue)
        return self

    def _check_criticality(self, queue: Queue) -> None:
        """Critical work only on pledged slots; streaming only at an E1 (R8.4a, R3.1)."""
        if "streaming" in queue.workflow_classes and self.echelon != "E1":
            raise ValueError(f"queue {queue.name}: streaming runs only at E1 sites")
        if not self.queue_pledged(queue):
            bad = sorted(set(queue.workflow_classes) - OPPORTUNISTIC_OK)
            if bad:
                raise ValueError(
                    f"queue {queue.name} is opportunistic but lists {bad}; opportunistic "
                    f"queues may run only {sorted(OPPORTUNISTIC_OK)}"
                )

    def queue_pledged(self, queue: Queue) -> bool:
        return self.pledged if queue.pledged is None else queue.pledged

    @property
    def cores(self) -> int:
        return sum(q.cores for q in self.queues)

    def rse(self, kind: Literal["DISK", "TAPE"]) -> str | None:
        return next((s.rse for s in self.storage if s.type == kind), None)
