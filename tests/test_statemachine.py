import pytest
from sqlalchemy import select

from epic_wfms.errors import IllegalTransitionError
from epic_wfms.model import DataFlavour, DetectorState, Readiness
from epic_wfms.statemachine import (
    TRANSITIONS,
    DetectorStateMachine,
    DetectorStatus,
    Guard,
    RunEffect,
    Trigger,
    check_pair,
)
from epic_wfms.statemachine.table import ALLOWED_FLAVOURS, ALLOWED_READINESS, transitions_from
from epic_wfms.store.database import AppendOnlyViolation, Database
from epic_wfms.store.history import append_transition, transition_history
from epic_wfms.store.schema import StateTransitionRecord

RUN = 7


def status_for(state: DetectorState, readiness: Readiness, guard: Guard) -> DetectorStatus:
    """A machine context in which ``guard`` holds."""
    flavour = sorted(ALLOWED_FLAVOURS[state])[0]
    in_run = state in (DetectorState.RUN, DetectorState.CALIB, DetectorState.TEST)
    open_run = RUN if in_run else None
    announced = RUN if guard is Guard.RUN_ANNOUNCED else None
    return DetectorStatus(state, readiness, flavour, open_run, announced)


LEGAL = [
    (t, readiness) for t in TRANSITIONS for readiness in sorted(t.source_readiness)
]


@pytest.mark.parametrize(
    ("transition", "readiness"), LEGAL,
    ids=[f"{t.source}/{r}-{t.trigger}" for t, r in LEGAL],
)
def test_every_legal_transition(transition, readiness):
    machine = DetectorStateMachine(status_for(transition.source, readiness, transition.guard))
    seen = []
    machine.add_listener(seen.append)
    record = machine.fire(transition.trigger, run_number=RUN)
    target = machine.status
    assert target.state == (transition.target or transition.source)
    assert target.readiness == (transition.target_readiness or readiness)
    assert target.flavour in ALLOWED_FLAVOURS[target.state]
    assert seen == [record] and record.trigger == transition.trigger
    if transition.effect is RunEffect.OPENS:
        assert target.open_run == RUN and target.announced_run is None
    elif transition.effect is RunEffect.CLOSES:
        assert target.open_run is None
    elif transition.effect is RunEffect.ANNOUNCES:
        assert target.announced_run == RUN


ILLEGAL = [
    (state, readiness, trigger)
    for state in DetectorState
    for readiness in sorted(ALLOWED_READINESS[state])
    for trigger in Trigger
    if trigger not in {t.trigger for t in transitions_from(state, readiness)}
]


@pytest.mark.parametrize(("state", "readiness", "trigger"), ILLEGAL)
def test_every_illegal_transition_is_refused_naming_legal_ones(state, readiness, trigger):
    machine = DetectorStateMachine(status_for(state, readiness, Guard.NONE))
    before = machine.status
    with pytest.raises(IllegalTransitionError) as info:
        machine.fire(trigger, run_number=RUN)
    message = str(info.value)
    assert f"{trigger.value!r} is not legal in state {state.value}/{readiness.value}" in message
    for legal in transitions_from(state, readiness):
        assert legal.trigger.value in message
    assert machine.status == before


def test_illegal_state_substate_pairs_name_legal_ones():
    with pytest.raises(IllegalTransitionError, match="physics, standby"):
        check_pair("run", "ready")
    with pytest.raises(IllegalTransitionError, match="lumi needs beam"):
        check_pair("no_beam", "not_ready", "lumi")
    with pytest.raises(IllegalTransitionError, match="legal states"):
        check_pair("warp", "ready")
    assert check_pair("beam", "ready", "lumi") == (
        DetectorState.BEAM, Readiness.READY, DataFlavour.LUMI
    )


def test_unknown_trigger_and_guards():
    machine = DetectorStateMachine(DetectorStatus(DetectorState.BEAM, Readiness.READY))
    with pytest.raises(IllegalTransitionError, match="unknown trigger"):
        machine.fire("warp_speed")
    with pytest.raises(IllegalTransitionError, match="was not announced"):
        machine.fire("start_run", run_number=3)
    with pytest.raises(IllegalTransitionError, match="needs the run number"):
        machine.fire("run_imminent")
    machine.fire("run_imminent", run_number=3)
    with pytest.raises(IllegalTransitionError, match="run 4 was not announced"):
        machine.fire("start_run", run_number=4)
    machine.fire("start_run", run_number=3)
    with pytest.raises(IllegalTransitionError, match="not the open run 3"):
        machine.fire("end_run", run_number=9)
    machine.fire("end_run", run_number=3)
    assert machine.status.label == "beam/ready" and machine.status.open_run is None


def test_whole_day_sequence_and_persisted_append_only_history(database_url):
    db = Database(database_url)
    db.create_schema()
    machine = DetectorStateMachine(listeners=[lambda r: append_transition(db, r)])
    steps = [("systems_on", None), ("beam_on", None), ("detector_ready", None),
             ("run_imminent", 11), ("start_run", 11), ("good_for_physics_dropped", None),
             ("good_for_physics_declared", None), ("pause_run", 11), ("resume_run", 11),
             ("end_run", 11), ("beam_lost", None), ("systems_off", None)]
    for trigger, run in steps:
        machine.fire(trigger, run_number=run, reason=f"shift log: {trigger}")
    history = transition_history(db)
    assert [h.trigger for h in history] == [t for t, _ in steps]
    assert history[4].to_state == "run" and history[4].run_number == 11
    assert all(h.reason.startswith("shift log") and h.occurred_at.tzinfo for h in history)
    with pytest.raises(AppendOnlyViolation), db.session() as session:
        session.scalars(select(StateTransitionRecord)).first().reason = "rewritten"
    with pytest.raises(AppendOnlyViolation), db.session() as session:
        session.delete(session.scalars(select(StateTransitionRecord)).first())
    assert transition_history(db)[0].reason == "shift log: systems_on"
