"""Operator controls the streaming agents obey, kept in the store so every process sees them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.store.schema import OperatorCommandRecord


def processing_held(session: Session) -> bool:
    """True while the latest operator suspend/resume is a suspend (monitor's write API)."""
    action = session.scalar(select(OperatorCommandRecord.action).where(
        OperatorCommandRecord.action.in_(("suspend", "resume")))
        .order_by(OperatorCommandRecord.id.desc()).limit(1))
    return action == "suspend"
