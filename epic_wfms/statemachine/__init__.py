"""Detector/DAQ state machine: the E0-E1 states, the complete transition table, history."""

from epic_wfms.statemachine.machine import (
    DetectorStateMachine,
    DetectorStatus,
    TransitionRecord,
    check_pair,
)
from epic_wfms.statemachine.table import TRANSITIONS, Guard, RunEffect, Transition, Trigger

__all__ = [
    "TRANSITIONS",
    "DetectorStateMachine",
    "DetectorStatus",
    "Guard",
    "RunEffect",
    "Transition",
    "TransitionRecord",
    "Trigger",
    "check_pair",
]
