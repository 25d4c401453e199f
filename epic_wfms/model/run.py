"""A data-taking run of the ePIC detector."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class RunType(StrEnum):
    PHYSICS = "physics"
    COSMICS = "cosmics"
    CALIBRATION = "calibration"
    BEAM_TEST = "beam-test"


class Run(BaseModel):
    """Run number, type, time span and the detector configuration it was taken with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(gt=0, lt=1_000_000, description="run number, 6 digits in file names")
    run_type: RunType = RunType.PHYSICS
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None
    detector_config: str = Field(min_length=1, description="detector configuration tag")
    target_stfs: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _end_after_start(self) -> Run:
        if self.end_time is not None and self.end_time < self.start_time:
            raise ValueError(
                f"end_time {self.end_time.isoformat()} is before start_time "
                f"{self.start_time.isoformat()}"
            )
        return self
