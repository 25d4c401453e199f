"""The detector/DAQ state machine: applies the transition table, checks guards, keeps history."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from epic_wfms.errors import IllegalTransitionError
from epic_wfms.model.detector import DataFlavour, DetectorState, Readiness
from epic_wfms.model.run import RunType
from epic_wfms.statemachine.table import (
    ALLOWED_FLAVOURS,
    ALLOWED_READINESS,
    Guard,
    RunEffect,
    Transition,
    Trigger,
    transitions_from,
)


@dataclass(frozen=True)
class DetectorStatus:
    """Where the complex is now: state, readiness substate, data flavour, and the run context."""

    state: DetectorState = DetectorState.OFF
    readiness: Readiness = Readiness.NOT_READY
    flavour: DataFlavour = DataFlavour.DAQ
    open_run: int | None = None
    announced_run: int | None = None
    run_type: RunType | None = None

    @property
    def label(self) -> str:
        return f"{self.state}/{self.readiness}"


@dataclass(frozen=True)
class TransitionRecord:
    """One appended history entry: never updated, never deleted."""

    trigger: Trigger
    source: DetectorStatus
    target: DetectorStatus
    effect: RunEffect
    run_number: int | None
    reason: str
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    synchronised: bool = False  # followed a state reported by the run control, not the table


TransitionListener = Callable[[TransitionRecord], None]


def check_pair(
    state: DetectorState | str, readiness: Readiness | str, flavour: DataFlavour | str | None = None
) -> tuple[DetectorState, Readiness, DataFlavour | None]:
    """Validate a state/substate(/flavour) combination, naming the legal ones if it is wrong."""
    try:
        state = DetectorState(state)
    except ValueError:
        raise IllegalTransitionError(
            f"unknown detector state {state!r}",
            f"legal states: {', '.join(s.value for s in DetectorState)}",
            "use one of the legal states",
        ) from None
    legal = sorted(r.value for r in ALLOWED_READINESS[state])
    if readiness not in legal:
        raise IllegalTransitionError(
            f"substate {readiness!r} cannot occur in state {state.value!r}",
            f"in {state.value!r} the readiness substate is one of: {', '.join(legal)}",
            "send a state/substate pair from docs/statemachine.md",
        )
    if flavour is not None:
        flavours = sorted(f.value for f in ALLOWED_FLAVOURS[state])
        if flavour not in flavours:
            raise IllegalTransitionError(
                f"data flavour {flavour!r} cannot occur in state {state.value!r}",
                f"in {state.value!r} the data flavour is one of: {', '.join(flavours)}",
                "send a flavour allowed in this state (lumi needs beam)",
            )
        flavour = DataFlavour(flavour)
    return state, Readiness(readiness), flavour


class DetectorStateMachine:
    """Thread-safe machine; listeners persist and publish each transition, in that order."""

    def __init__(
        self,
        status: DetectorStatus | None = None,
        listeners: list[TransitionListener] | None = None,
    ) -> None:
        self._status = status or DetectorStatus()
        self._listeners = list(listeners or [])
        self._lock = threading.Lock()

    @property
    def status(self) -> DetectorStatus:
        return self._status

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def legal_triggers(self) -> list[Transition]:
        return transitions_from(self._status.state, self._status.readiness)

    def fire(
        self,
        trigger: Trigger | str,
        *,
        run_number: int | None = None,
        run_type: RunType | None = None,
        flavour: DataFlavour | str | None = None,
        reason: str = "",
    ) -> TransitionRecord:
        """Apply ``trigger``; refuse it with the legal alternatives if the table forbids it."""
        with self._lock:
            return self._fire(self._parse_trigger(trigger), run_number, run_type, flavour, reason)

    def follow(
        self,
        trigger: Trigger | str,
        state: DetectorState | str,
        substate: Readiness | str,
        *,
        run_number: int | None = None,
        run_type: RunType | None = None,
        reason: str = "",
    ) -> tuple[TransitionRecord | None, str | None]:
        """Follow ``trigger`` to the ``state/substate`` the run control reports in effect
        (docs/statemachine.md#following-a-reported-state). Returns the record (None if the
        machine is already there) and what is really inconsistent about it, if anything."""
        from epic_wfms.statemachine.follow import plan_follow

        with self._lock:
            trigger = self._parse_trigger(trigger)
            reported_state, readiness, _ = check_pair(state, substate)
            plan = plan_follow(self._status, trigger, reported_state, readiness, run_number,
                               run_type)
            if plan.action == "already_there":
                return None, plan.inconsistency
            if plan.action == "fire":
                return self._fire(trigger, run_number, run_type, None, reason), None
            record = TransitionRecord(
                trigger, self._status, plan.target, plan.effect,
                run_number if run_number is not None else self._status.open_run,
                plan.why if not reason else f"{reason}; {plan.why}", synchronised=True,
            )
            self._commit(record)
            return record, plan.inconsistency

    def _fire(
        self, trigger: Trigger, run_number: int | None, run_type: RunType | None,
        flavour: DataFlavour | str | None, reason: str,
    ) -> TransitionRecord:
        transition = self._find(trigger)
        self._check_guard(transition, run_number)
        target = self._target(transition, run_number, run_type, flavour)
        record = TransitionRecord(
            trigger, self._status, target, transition.effect,
            run_number if run_number is not None else self._status.open_run,
            reason or transition.description,
        )
        self._commit(record)
        return record

    def _commit(self, record: TransitionRecord) -> None:
        for listener in self._listeners:
            listener(record)
        self._status = record.target

    def _parse_trigger(self, trigger: Trigger | str) -> Trigger:
        try:
            return Trigger(trigger)
        except ValueError:
            raise IllegalTransitionError(
                f"unknown trigger {trigger!r}",
                f"known triggers: {', '.join(t.value for t in Trigger)}",
                "use a trigger from docs/statemachine.md",
            ) from None

    def _find(self, trigger: Trigger) -> Transition:
        legal = self.legal_triggers()
        for transition in legal:
            if transition.trigger == trigger:
                return transition
        options = ", ".join(
            f"{t.trigger.value} (-> {_target_label(t, self._status)})" for t in legal
        )
        raise IllegalTransitionError(
            f"trigger {trigger.value!r} is not legal in state {self._status.label}",
            f"legal triggers in {self._status.label}: {options}",
            "send one of the legal triggers, or bring the complex to a state where this one is",
        )

    def _check_guard(self, transition: Transition, run_number: int | None) -> None:
        status = self._status
        failure = ""
        if transition.guard is Guard.NO_OPEN_RUN and (status.open_run or status.announced_run):
            failure = f"run {status.open_run or status.announced_run} is still open or announced"
        elif transition.guard is Guard.RUN_ANNOUNCED and (
            status.announced_run is None or run_number not in (None, status.announced_run)
        ):
            failure = (
                f"run {run_number} was not announced (announced: {status.announced_run})"
            )
        elif transition.guard is Guard.RUN_OPEN and run_number not in (None, status.open_run):
            failure = f"run {run_number} is not the open run {status.open_run}"
        if transition.trigger is Trigger.RUN_IMMINENT and run_number is None:
            failure = "run_imminent needs the run number"
        if failure:
            raise IllegalTransitionError(
                f"{transition.trigger.value} refused in {status.label}",
                f"guard '{transition.guard.value}' failed: {failure}",
                "send run_imminent for the run first, or name the open run",
            )

    def _target(
        self,
        transition: Transition,
        run_number: int | None,
        run_type: RunType | None,
        flavour: DataFlavour | str | None,
    ) -> DetectorStatus:
        status = self._status
        state = transition.target or status.state
        readiness = transition.target_readiness or status.readiness
        new_flavour = status.flavour if flavour is None else flavour
        if new_flavour not in ALLOWED_FLAVOURS[state]:
            new_flavour = DataFlavour.DAQ if flavour is None else new_flavour
        _, readiness, new_flavour = check_pair(state, readiness, new_flavour)
        open_run, announced, kind = status.open_run, status.announced_run, status.run_type
        if transition.effect is RunEffect.ANNOUNCES:
            announced, kind = run_number, run_type or RunType.PHYSICS
        elif transition.effect is RunEffect.OPENS:
            open_run, announced = status.announced_run, None
        elif transition.effect is RunEffect.CLOSES:
            open_run, kind = None, None
        return DetectorStatus(state, readiness, new_flavour, open_run, announced, kind)


def _target_label(transition: Transition, status: DetectorStatus) -> str:
    state = transition.target or status.state
    readiness = transition.target_readiness or status.readiness
    return f"{state.value}/{readiness.value}"
