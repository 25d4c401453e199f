"""Persisting the state machine's transitions (append-only) and reading them back."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.statemachine import TransitionRecord
from epic_wfms.store.database import Database
from epic_wfms.store.schema import StateTransitionRecord


def append_transition(db: Database, record: TransitionRecord) -> None:
    with db.session() as session:
        session.add(StateTransitionRecord(
            occurred_at=record.occurred_at,
            trigger=record.trigger.value,
            from_state=record.source.state.value,
            from_substate=record.source.readiness.value,
            to_state=record.target.state.value,
            to_substate=record.target.readiness.value,
            flavour=record.target.flavour.value,
            effect=record.effect.value,
            run_number=record.run_number,
            reason=record.reason,
            synchronised=record.synchronised,
        ))


def last_transition(db: Database) -> StateTransitionRecord | None:
    with db.session() as session:
        return session.scalar(
            select(StateTransitionRecord).order_by(StateTransitionRecord.id.desc()).limit(1)
        )


def transition_history(db: Database, limit: int | None = None) -> list[StateTransitionRecord]:
    with db.session() as session:
        query = select(StateTransitionRecord).order_by(StateTransitionRecord.id)
        if limit:
            query = query.limit(limit)
        return list(session.scalars(query))
