"""The complete ePIC E0-E1 transition table: states, substate rules, triggers, guards, effects.

The testbed defines states and a handful of transitions; this table is the full contract
(docs/statemachine.md is generated from the same data by ``epic-wfms statemachine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from epic_wfms.model.detector import DataFlavour, DetectorState, Readiness

S, R, F = DetectorState, Readiness, DataFlavour

ALLOWED_READINESS: dict[DetectorState, frozenset[Readiness]] = {
    S.OFF: frozenset({R.NOT_READY}),
    S.NO_BEAM: frozenset({R.NOT_READY}),
    S.BEAM: frozenset({R.NOT_READY, R.READY}),
    S.RUN: frozenset({R.PHYSICS, R.STANDBY}),
    S.CALIB: frozenset({R.NOT_READY}),
    S.TEST: frozenset(Readiness),
}

_ALL_BUT_LUMI = frozenset({F.EIC, F.EPIC, F.DAQ, F.CALIB})
ALLOWED_FLAVOURS: dict[DetectorState, frozenset[DataFlavour]] = {
    S.OFF: _ALL_BUT_LUMI,
    S.NO_BEAM: _ALL_BUT_LUMI,
    S.BEAM: frozenset(DataFlavour),
    S.RUN: frozenset(DataFlavour),
    S.CALIB: _ALL_BUT_LUMI,
    S.TEST: _ALL_BUT_LUMI,
}


class Trigger(StrEnum):
    """What makes the complex change state: a run-lifecycle message or an operational event."""

    SYSTEMS_ON = "systems_on"
    SYSTEMS_OFF = "systems_off"
    BEAM_ON = "beam_on"
    BEAM_LOST = "beam_lost"
    DETECTOR_READY = "detector_ready"
    DETECTOR_FAULT = "detector_fault"
    RUN_IMMINENT = "run_imminent"
    START_RUN = "start_run"
    PAUSE_RUN = "pause_run"
    RESUME_RUN = "resume_run"
    GOOD_FOR_PHYSICS_DROPPED = "good_for_physics_dropped"
    GOOD_FOR_PHYSICS_DECLARED = "good_for_physics_declared"
    END_RUN = "end_run"
    START_CALIB = "start_calib"
    END_CALIB = "end_calib"
    START_TEST = "start_test"
    END_TEST = "end_test"
    SET_FLAVOUR = "set_flavour"


class Guard(StrEnum):
    """Conditions checked on the machine's context before a transition is allowed."""

    NONE = "none"
    NO_OPEN_RUN = "no run is open or announced"
    RUN_ANNOUNCED = "a run was announced by run_imminent and its number matches"
    RUN_OPEN = "the run named in the message is the open run"


class RunEffect(StrEnum):
    """Side effect of a transition on run boundaries."""

    NONE = "none"
    ANNOUNCES = "announces the run (datasets created, workers provisioned)"
    OPENS = "opens the run"
    CLOSES = "closes the run (datasets closed, final merge)"


@dataclass(frozen=True)
class Transition:
    source: DetectorState
    source_readiness: frozenset[Readiness]
    trigger: Trigger
    target: DetectorState | None  # None: stays in the source state
    target_readiness: Readiness | None  # None: keeps the source readiness
    guard: Guard = Guard.NONE
    effect: RunEffect = RunEffect.NONE
    description: str = ""


def _t(
    source: DetectorState,
    readiness: set[Readiness],
    trigger: Trigger,
    target: DetectorState | None,
    target_readiness: Readiness | None,
    description: str,
    guard: Guard = Guard.NONE,
    effect: RunEffect = RunEffect.NONE,
) -> Transition:
    return Transition(
        source, frozenset(readiness), trigger, target, target_readiness, guard, effect, description
    )


T = Trigger
TRANSITIONS: tuple[Transition, ...] = (
    _t(S.OFF, {R.NOT_READY}, T.SYSTEMS_ON, S.NO_BEAM, R.NOT_READY, "detector systems powered on"),
    _t(S.NO_BEAM, {R.NOT_READY}, T.SYSTEMS_OFF, S.OFF, R.NOT_READY, "systems powered off",
       Guard.NO_OPEN_RUN),
    _t(S.NO_BEAM, {R.NOT_READY}, T.BEAM_ON, S.BEAM, R.NOT_READY, "collider delivers beam"),
    _t(S.BEAM, {R.NOT_READY, R.READY}, T.BEAM_LOST, S.NO_BEAM, R.NOT_READY,
       "beam dumped or lost"),
    _t(S.BEAM, {R.NOT_READY}, T.DETECTOR_READY, S.BEAM, R.READY,
       "detector declared ready for data taking"),
    _t(S.BEAM, {R.READY}, T.DETECTOR_FAULT, S.BEAM, R.NOT_READY, "detector fault while ready"),
    _t(S.BEAM, {R.READY}, T.RUN_IMMINENT, None, None, "physics run announced",
       Guard.NO_OPEN_RUN, RunEffect.ANNOUNCES),
    _t(S.NO_BEAM, {R.NOT_READY}, T.RUN_IMMINENT, None, None,
       "calibration or test run announced", Guard.NO_OPEN_RUN, RunEffect.ANNOUNCES),
    _t(S.BEAM, {R.READY}, T.START_RUN, S.RUN, R.PHYSICS, "run starts, good for physics",
       Guard.RUN_ANNOUNCED, RunEffect.OPENS),
    _t(S.RUN, {R.PHYSICS}, T.PAUSE_RUN, S.RUN, R.STANDBY, "run paused by the run control",
       Guard.RUN_OPEN),
    _t(S.RUN, {R.STANDBY}, T.RESUME_RUN, S.RUN, R.PHYSICS, "run resumed by the run control",
       Guard.RUN_OPEN),
    _t(S.RUN, {R.PHYSICS}, T.GOOD_FOR_PHYSICS_DROPPED, S.RUN, R.STANDBY,
       "beam conditions no longer good for physics; run stays open"),
    _t(S.RUN, {R.STANDBY}, T.GOOD_FOR_PHYSICS_DECLARED, S.RUN, R.PHYSICS,
       "beam conditions declared good for physics again"),
    _t(S.RUN, {R.PHYSICS, R.STANDBY}, T.END_RUN, S.BEAM, R.READY, "run ends normally",
       Guard.RUN_OPEN, RunEffect.CLOSES),
    _t(S.RUN, {R.PHYSICS, R.STANDBY}, T.DETECTOR_FAULT, S.BEAM, R.NOT_READY,
       "detector fault ends the run", effect=RunEffect.CLOSES),
    _t(S.RUN, {R.PHYSICS, R.STANDBY}, T.BEAM_LOST, S.NO_BEAM, R.NOT_READY,
       "beam lost ends the run", effect=RunEffect.CLOSES),
    _t(S.NO_BEAM, {R.NOT_READY}, T.START_CALIB, S.CALIB, R.NOT_READY,
       "calibration run starts (pulsers, cosmics)", Guard.RUN_ANNOUNCED, RunEffect.OPENS),
    _t(S.CALIB, {R.NOT_READY}, T.END_CALIB, S.NO_BEAM, R.NOT_READY, "calibration run ends",
       Guard.RUN_OPEN, RunEffect.CLOSES),
    _t(S.NO_BEAM, {R.NOT_READY}, T.START_TEST, S.TEST, R.NOT_READY,
       "test run starts (cosmics, beam test, DAQ test)", Guard.RUN_ANNOUNCED, RunEffect.OPENS),
    _t(S.TEST, set(Readiness), T.END_TEST, S.NO_BEAM, R.NOT_READY, "test run ends",
       Guard.RUN_OPEN, RunEffect.CLOSES),
    *(
        _t(state, set(ALLOWED_READINESS[state]), T.SET_FLAVOUR, None, None,
           "the DAQ stream changes data flavour")
        for state in DetectorState
    ),
)


def transitions_from(state: DetectorState, readiness: Readiness) -> list[Transition]:
    """Every transition legal from ``state/readiness`` (guards not yet evaluated)."""
    return [t for t in TRANSITIONS if t.source == state and readiness in t.source_readiness]
