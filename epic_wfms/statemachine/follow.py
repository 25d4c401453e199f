"""Following the state a run control reports (the ePIC testbed stamps every run-control
message with the state and substate in effect, and sends no bring-up events).

The machine takes the table's transition when the table leads there; otherwise it moves to
the reported state and records that move as *synchronised*. Only a contradiction about the run
itself (a run never ended, a run started that was never announced, a pause for another run)
is really inconsistent and reported as an integrity issue; the machine still follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from epic_wfms.model.detector import DataFlavour, DetectorState, Readiness
from epic_wfms.model.run import RunType
from epic_wfms.statemachine.machine import DetectorStatus
from epic_wfms.statemachine.table import (
    ALLOWED_FLAVOURS,
    TRANSITIONS,
    RunEffect,
    Trigger,
    transitions_from,
)

RUN_STATES = (DetectorState.RUN, DetectorState.CALIB, DetectorState.TEST)


@dataclass(frozen=True)
class FollowPlan:
    action: Literal["fire", "synchronise", "already_there"]
    target: DetectorStatus | None = None
    effect: RunEffect = RunEffect.NONE
    why: str = ""
    inconsistency: str | None = None


def trigger_effect(trigger: Trigger, source: DetectorStatus, state: DetectorState) -> RunEffect:
    """The run effect the table gives ``trigger`` (a trigger whose effect depends on where it
    happens, like beam_lost, closes the run only when it leaves a run state)."""
    effects = {t.effect for t in TRANSITIONS if t.trigger == trigger}
    if len(effects) == 1:
        return effects.pop()
    leaves_run = source.state in RUN_STATES and state not in RUN_STATES
    return RunEffect.CLOSES if leaves_run and RunEffect.CLOSES in effects else RunEffect.NONE


def run_inconsistency(status: DetectorStatus, trigger: Trigger, run: int | None) -> str | None:
    """What contradicts the run context, if anything (the table's guards, stated as facts)."""
    if run is None:
        return None
    if trigger is Trigger.RUN_IMMINENT:
        if status.open_run not in (None, run):
            return f"run {run} announced while run {status.open_run} is still open (never ended)"
        if status.announced_run not in (None, run):
            return f"run {run} announced while run {status.announced_run} was announced and " \
                   "never started"
    elif trigger in (Trigger.START_RUN, Trigger.START_CALIB, Trigger.START_TEST):
        if status.announced_run is None and status.open_run != run:
            return f"run {run} started without being announced (its run_imminent never came)"
        if status.announced_run not in (None, run):
            return f"run {run} started while run {status.announced_run} was the announced one"
    elif trigger in (Trigger.PAUSE_RUN, Trigger.RESUME_RUN, Trigger.END_RUN) and (
            status.open_run != run):
        return f"{trigger.value} names run {run} but the open run is {status.open_run}"
    return None


def _effect_holds(status: DetectorStatus, effect: RunEffect, run: int | None) -> bool:
    if run is None:
        return True
    return {
        RunEffect.ANNOUNCES: run in (status.announced_run, status.open_run),
        RunEffect.OPENS: status.open_run == run,
        RunEffect.CLOSES: status.open_run is None,
    }.get(effect, status.open_run in (None, run))


def plan_follow(
    status: DetectorStatus, trigger: Trigger, state: DetectorState, readiness: Readiness,
    run: int | None, run_type: RunType | None,
) -> FollowPlan:
    inconsistency = run_inconsistency(status, trigger, run)
    effect = trigger_effect(trigger, status, state)
    if (status.state, status.readiness) == (state, readiness) and _effect_holds(
            status, effect, run):
        return FollowPlan("already_there")  # a repeated message: nothing happens twice
    table_targets = []
    for transition in transitions_from(status.state, status.readiness):
        if transition.trigger is trigger:
            target = (transition.target or status.state,
                      transition.target_readiness or status.readiness)
            if target == (state, readiness) and inconsistency is None:
                return FollowPlan("fire")
            table_targets.append(f"{target[0].value}/{target[1].value}")
    detail = (f"the table takes {trigger.value} from {status.label} to "
              f"{' or '.join(table_targets)}" if table_targets
              else f"the table has no {trigger.value} from {status.label}")
    return FollowPlan(
        "synchronise", _synchronised(status, effect, state, readiness, run, run_type), effect,
        f"synchronised to {state.value}/{readiness.value}, reported with {trigger.value} "
        f"({detail})", inconsistency,
    )


def _synchronised(
    status: DetectorStatus, effect: RunEffect, state: DetectorState, readiness: Readiness,
    run: int | None, run_type: RunType | None,
) -> DetectorStatus:
    flavour = status.flavour if status.flavour in ALLOWED_FLAVOURS[state] else DataFlavour.DAQ
    open_run, announced, kind = status.open_run, status.announced_run, status.run_type
    if effect is RunEffect.ANNOUNCES:
        announced, kind = run, run_type or RunType.PHYSICS
    elif effect is RunEffect.OPENS:
        open_run, announced, kind = run, None, kind or run_type or RunType.PHYSICS
    elif effect is RunEffect.CLOSES:
        open_run, kind = None, None
    elif state in RUN_STATES and open_run is None and run is not None:
        open_run = run  # a run we never saw start is followed as the open one
    return DetectorStatus(state, readiness, flavour, open_run, announced, kind)
