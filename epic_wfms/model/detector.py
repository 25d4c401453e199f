"""Detector/DAQ states and substates of the ePIC E0-E1 model (vocabulary only, no rules)."""

from __future__ import annotations

from enum import StrEnum


class DetectorState(StrEnum):
    """Top-level state of the detector/accelerator complex."""

    OFF = "off"
    NO_BEAM = "no_beam"
    BEAM = "beam"
    RUN = "run"
    CALIB = "calib"
    TEST = "test"


class Readiness(StrEnum):
    """Readiness substate: how far the complex is from taking physics data."""

    NOT_READY = "not_ready"
    READY = "ready"
    PHYSICS = "physics"
    STANDBY = "standby"


class DataFlavour(StrEnum):
    """Data-flavour substate: the kind of information the DAQ stream currently carries."""

    LUMI = "lumi"
    EIC = "eic"
    EPIC = "epic"
    DAQ = "daq"
    CALIB = "calib"
