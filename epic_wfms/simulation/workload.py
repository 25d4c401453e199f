"""The simulated workload: a production campaign (per workflow class) and the live STF stream."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from epic_wfms.brokerage.request import JobRequest


@dataclass(frozen=True, slots=True)
class ClassProfile:
    """Shape of one workflow class's jobs in the campaign."""

    cores: int
    hours: float  # mean duration (exponential)
    memory_per_core_gb: float = 2.0
    gpus: int = 0
    input_gb: float = 0.0
    weight: float = 1.0  # share of the campaign's core-hours


PROFILES: dict[str, ClassProfile] = {
    "simulation": ClassProfile(cores=8, hours=2.0, weight=0.40),
    "reconstruction": ClassProfile(cores=8, hours=1.5, input_gb=16, weight=0.20),
    "reprocessing": ClassProfile(cores=8, hours=1.5, input_gb=16, weight=0.12),
    "calibration": ClassProfile(cores=8, hours=0.5, memory_per_core_gb=3, input_gb=8,
                                weight=0.06),
    "analysis": ClassProfile(cores=4, hours=1.0, input_gb=4, weight=0.16),
    "ml": ClassProfile(cores=12, hours=2.0, memory_per_core_gb=4, gpus=1, weight=0.06),
}


@dataclass(slots=True)
class SimJob:
    request: JobRequest
    duration_s: float
    is_stf: bool = False
    attempt: int = 0
    queue: int = -1
    started: float = -1.0
    done: bool = False
    events: list = field(default_factory=list)


class Workload:
    """Draws campaign jobs and STF jobs reproducibly from a seed."""

    def __init__(self, seed: int, input_rses: list[str], stf_cores: int, stf_seconds: float,
                 classes: tuple[str, ...] | None = None) -> None:
        self.rng = random.Random(seed)
        self.input_rses = input_rses
        self.stf_cores, self.stf_seconds = stf_cores, stf_seconds
        self.classes = list(classes or PROFILES)
        self.weights = [PROFILES[c].weight / (PROFILES[c].cores * PROFILES[c].hours)
                        for c in self.classes]
        self.mean_core_hours = sum(
            w * PROFILES[c].cores * PROFILES[c].hours for c, w in zip(
                self.classes, self.weights, strict=True)) / sum(self.weights)
        self._n = 0

    def campaign_job(self) -> SimJob:
        rng = self.rng
        wf = rng.choices(self.classes, self.weights)[0]
        p = PROFILES[wf]
        self._n += 1
        rses = (rng.choice(self.input_rses),) if p.input_gb else ()
        express = wf == "calibration" and rng.random() < 0.2  # prompt calibration (R3.10)
        duration = min(rng.expovariate(1.0 / (p.hours * 3600)), 2.5 * p.hours * 3600) + 60
        req = JobRequest(
            job_id=f"{wf}-{self._n}", workflow_class=wf, cores=p.cores,
            memory_per_core_gb=p.memory_per_core_gb, walltime_s=3 * p.hours * 3600 + 120,
            gpus=p.gpus, input_rses=rses, input_gb=p.input_gb,
            priority=950 if express else 500, express=express,
            user=f"user{rng.randrange(20)}" if wf == "analysis" else "epicprod",
            workflow=f"campaign.{wf}",
        )
        return SimJob(req, duration)

    def stf_job(self, sequence: int) -> SimJob:
        req = JobRequest(job_id=f"stf-{sequence:07d}", workflow_class="streaming",
                         cores=self.stf_cores, memory_per_core_gb=2.0, walltime_s=3600,
                         input_rses=("BNL_DISK",), input_gb=2.0, priority=950, express=True,
                         workflow="streaming.reco")
        duration = self.stf_seconds * (0.8 + 0.4 * self.rng.random())
        return SimJob(req, duration, is_stf=True)
