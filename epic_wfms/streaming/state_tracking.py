"""Drive the state machine from run-control messages; persist and broadcast every transition."""

from __future__ import annotations

import logging

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.errors import IllegalTransitionError
from epic_wfms.model.detector import DataFlavour, DetectorState, Readiness
from epic_wfms.statemachine import (
    DetectorStateMachine,
    DetectorStatus,
    RunEffect,
    TransitionRecord,
    Trigger,
)
from epic_wfms.store.history import append_transition, last_transition
from epic_wfms.store.integrity import report_issue
from epic_wfms.streaming.context import StreamingContext

log = logging.getLogger(__name__)

LIFECYCLE_TRIGGERS = {
    "run_imminent": Trigger.RUN_IMMINENT,
    "start_run": Trigger.START_RUN,
    "pause_run": Trigger.PAUSE_RUN,
    "resume_run": Trigger.RESUME_RUN,
    "end_run": Trigger.END_RUN,
}


def restore_status(ctx: StreamingContext) -> DetectorStatus:
    """Where the complex was at the last persisted transition (a restarted tracker resumes)."""
    last = last_transition(ctx.db)
    if last is None:
        return DetectorStatus()
    state = DetectorState(last.to_state)
    in_run = state in (DetectorState.RUN, DetectorState.CALIB, DetectorState.TEST)
    announced = last.effect == RunEffect.ANNOUNCES.value
    return DetectorStatus(
        state, Readiness(last.to_substate), DataFlavour(last.flavour),
        open_run=last.run_number if in_run else None,
        announced_run=last.run_number if announced else None,
    )


class DetectorFollower:
    """For roles that do not own the machine: keep the state stamped on our messages current."""

    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        status = restore_status(ctx)
        ctx.detector.state, ctx.detector.substate = status.state.value, status.readiness.value

    def subscribe(self) -> None:
        # the view is restored from the store at start: it needs no backlog while down
        self.ctx.bus.subscribe(dest.STATE, f"{self.ctx.producer}-state", self.on_state_changed,
                               track=False, durable=False)

    def on_state_changed(self, message: m.Message) -> None:
        change: m.StateChanged = message.body
        self.ctx.detector.state, self.ctx.detector.substate = change.to_state, change.to_substate


class StateTracker:
    """Owns the detector state machine of this E1 installation."""

    def __init__(self, ctx: StreamingContext, machine: DetectorStateMachine | None = None) -> None:
        self.ctx = ctx
        self.machine = machine or DetectorStateMachine(restore_status(ctx))
        status = self.machine.status
        ctx.detector.state, ctx.detector.substate = status.state.value, status.readiness.value
        self.machine.add_listener(lambda record: append_transition(ctx.db, record))
        self.machine.add_listener(self._broadcast)

    def subscribe(self) -> None:
        self.ctx.bus.subscribe(dest.RUN_CONTROL, "state-tracker", self.on_run_control)

    def on_run_control(self, message: m.Message) -> None:
        body = message.body
        if message.msg_type == "detector_event":
            self._fire(body.trigger, None, body.reason, flavour=body.flavour)
            return
        trigger = LIFECYCLE_TRIGGERS.get(message.msg_type)
        if trigger is None:
            return
        run_type = getattr(body, "run_type", None)
        reason = getattr(body, "reason", "")
        if body.reported_state and body.reported_substate:  # the testbed states where it is
            self._follow(trigger, body.run_number, reason, body.reported_state,
                         body.reported_substate, run_type)
            return
        self._fire(trigger, body.run_number, reason, run_type=run_type)

    def _fire(self, trigger: str, run_number: int | None, reason: str, **kw: object) -> None:
        try:
            self.machine.fire(trigger, run_number=run_number, reason=reason, **kw)
        except IllegalTransitionError as error:
            # refused, not lost: the refusal is an integrity issue operators see
            self._report("illegal_transition", str(error), run_number)

    def _follow(self, trigger: Trigger, run_number: int, reason: str, state: str,
                substate: str, run_type: object) -> None:
        """Follow the reported state (synchronised where the table does not lead there);
        only a contradiction about the run is an integrity issue."""
        try:
            _record, inconsistency = self.machine.follow(
                trigger, state, substate, run_number=run_number, run_type=run_type,
                reason=reason)
        except IllegalTransitionError as error:  # the report itself is no legal state
            self._report("state_inconsistent", f"{trigger.value} reported {state}/{substate}: "
                         f"{error}", run_number)
            self._fire(trigger, run_number, reason, run_type=run_type)
            return
        if inconsistency:
            self._report("state_inconsistent", inconsistency, run_number)

    def _report(self, kind: str, detail: str, run_number: int | None) -> None:
        log.warning("%s: %s", kind, detail)
        report_issue(self.ctx.db, kind, detail, run_number=run_number)
        self.ctx.publish(dest.EVENTS, "integrity_issue", m.IntegrityIssue(
            kind=kind, run_number=run_number, detail=detail,
        ), run_number)

    def _broadcast(self, record: TransitionRecord) -> None:
        target = record.target
        self.ctx.detector.state, self.ctx.detector.substate = target.state, target.readiness
        self.ctx.publish(dest.STATE, "state_changed", m.StateChanged(
            trigger=record.trigger.value,
            from_state=record.source.state.value,
            from_substate=record.source.readiness.value,
            to_state=target.state.value,
            to_substate=target.readiness.value,
            flavour=target.flavour.value,
            effect=record.effect.name.lower(),
            run_number=record.run_number,
            reason=record.reason,
            synchronised=record.synchronised,
        ), record.run_number)
