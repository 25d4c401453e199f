"""What a job (or an STF) asks of brokerage. Plain slotted dataclass: cheap to build in bulk."""

from __future__ import annotations

from dataclasses import dataclass

EXPRESS_PRIORITY = 900  # at or above: the express lane (R7.5)


@dataclass(slots=True)
class JobRequest:
    job_id: str
    workflow_class: str
    cores: int = 1
    memory_per_core_gb: float = 2.0
    walltime_s: float = 4 * 3600.0
    arch: str | None = None  # None: any architecture (the payload is built for both)
    gpus: int = 0
    input_rses: tuple[str, ...] = ()  # RSEs holding the input replicas
    input_gb: float = 0.0
    priority: int = 500
    express: bool = False
    clone: bool = False  # R7.5: also name a second site to run a duplicate
    user: str = "epicprod"
    workflow: str = ""

    @property
    def lane(self) -> str:
        return "express" if self.express or self.priority >= EXPRESS_PRIORITY else "normal"
