"""Super-timeframes (STFs) and TF samples: the atomic units of ePIC raw-data streaming."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from epic_wfms.model.checksum import from_testbed_checksum
from epic_wfms.model.detector import DetectorState
from epic_wfms.model.naming import (
    check_file_name,
    check_stream_stf_filename,
    stf_filename,
    tf_sample_filename,
)

FileName = Annotated[str, AfterValidator(check_file_name)]  # one path component (naming.py)
TF_DURATION_S = 2**16 / 98.5e6  # 2^16 bunch crossings at 98.5 MHz ~ 0.665 ms


class SuperTimeFrame(BaseModel):
    """One STF file as the DAQ announces it: O(1000) TFs, ~0.6 s, the unit of registration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_number: int | None = Field(default=None, gt=0, lt=1_000_000)
    sequence: int = Field(ge=0, lt=1_000_000)
    filename: FileName
    first_tf_time: AwareDatetime
    last_tf_time: AwareDatetime
    tf_count: int = Field(gt=0)
    size_bytes: int = Field(gt=0)
    adler32: str
    state: DetectorState
    substate: str = Field(min_length=1)
    daq_metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("adler32")
    @classmethod
    def _adler32(cls, value: str) -> str:
        return from_testbed_checksum(value)

    @model_validator(mode="after")
    def _consistent(self) -> SuperTimeFrame:
        if self.last_tf_time < self.first_tf_time:
            raise ValueError("last_tf_time is before first_tf_time")
        if self.run_number is not None and self.filename != stf_filename(
            self.run_number, self.sequence
        ):
            raise ValueError(
                f"filename {self.filename!r} does not match run {self.run_number} sequence "
                f"{self.sequence}; expected {stf_filename(self.run_number, self.sequence)!r}"
            )
        if self.run_number is None:
            segment = self.daq_metadata.get("segment")
            check_stream_stf_filename(self.filename, self.state.value, self.sequence,
                                      None if segment is None else str(segment))
        return self


class TFSample(BaseModel):
    """A sub-STF slice of timeframes sampled for fast monitoring (R3.8, R3.12)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stf_filename: FileName
    run_number: int | None = Field(default=None, gt=0, lt=1_000_000)
    index: int = Field(ge=0, lt=1000)
    filename: FileName
    first_tf: int = Field(ge=0)
    tf_count: int = Field(gt=0)
    size_bytes: int = Field(gt=0)
    adler32: str

    @field_validator("adler32")
    @classmethod
    def _adler32(cls, value: str) -> str:
        return from_testbed_checksum(value)

    @model_validator(mode="after")
    def _named_after_its_stf(self) -> TFSample:
        expected = tf_sample_filename(self.stf_filename, self.index)
        if not self.stf_filename.endswith(".stf") or self.filename != expected:
            raise ValueError(f"TF sample {self.filename[:80]!r} of {self.stf_filename[:80]!r} "
                             f"does not follow the naming convention; expected {expected!r}")
        return self
