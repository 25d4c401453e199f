"""Domain model: plain, validated records that every other package shares. Depends on nothing."""

from epic_wfms.model.detector import DataFlavour, DetectorState, Readiness
from epic_wfms.model.run import Run, RunType
from epic_wfms.model.stf import SuperTimeFrame, TFSample
from epic_wfms.model.validation import parse_record

__all__ = [
    "DataFlavour",
    "DetectorState",
    "Readiness",
    "Run",
    "RunType",
    "SuperTimeFrame",
    "TFSample",
    "parse_record",
]
