"""Dead letters: messages no consumer could accept, kept with their reason until an operator
replays or discards them (``epic-wfms deadletters``). Each is attributed to the run its body
names (our envelope's ``run_number``, the testbed's ``run_id``), so a run's summary, ``epic-wfms
status`` and the monitor show what that run could not take in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from epic_wfms.bus.screening import parse_body
from epic_wfms.errors import MalformedMessageError
from epic_wfms.store.database import Database
from epic_wfms.store.schema import DeadLetterRecord, utcnow


def attribution(body: str) -> tuple[int | None, str | None]:
    """(run number, msg_type) named by a message body, as far as it can be read: a body
    the bus's screening refuses (too deep, too large, NUL) names nothing."""
    try:
        data = parse_body(body)
    except MalformedMessageError:
        return None, None
    msg_type = data.get("msg_type")
    payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
    for value in (data.get("run_number"), payload.get("run_number"), data.get("run_id")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value, _text(msg_type)
        if isinstance(value, str) and value.isdigit() and len(value) < 10:
            return int(value), _text(msg_type)
    return None, _text(msg_type)


def _text(value: Any) -> str | None:
    return value[:40] if isinstance(value, str) else None


def open_letters(db: Database, run_number: int | None = None, include_resolved: bool = False,
                 ) -> list[DeadLetterRecord]:
    with db.session() as session:
        query = select(DeadLetterRecord).order_by(DeadLetterRecord.id)
        if run_number is not None:
            query = query.where(DeadLetterRecord.run_number == run_number)
        if not include_resolved:
            query = query.where(DeadLetterRecord.resolved_at.is_(None))
        return list(session.scalars(query))


def open_count(db: Database, run_number: int) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(DeadLetterRecord).where(
            DeadLetterRecord.run_number == run_number, DeadLetterRecord.resolved_at.is_(None)))


def open_by_run(db: Database) -> dict[int | None, int]:
    with db.session() as session:
        return dict(session.execute(select(DeadLetterRecord.run_number, func.count()).where(
            DeadLetterRecord.resolved_at.is_(None)).group_by(DeadLetterRecord.run_number)).all())


def get_letter(db: Database, letter_id: int) -> DeadLetterRecord | None:
    with db.session() as session:
        return session.get(DeadLetterRecord, letter_id)


def resolve(db: Database, ids: list[int], resolution: str) -> None:
    with db.session() as session:
        for letter_id in ids:
            letter = session.get(DeadLetterRecord, letter_id)
            if letter is not None and letter.resolved_at is None:
                letter.resolved_at, letter.resolution = utcnow(), resolution


def as_dict(letter: DeadLetterRecord, body: bool = False) -> dict[str, Any]:
    info = {
        "id": letter.id, "run_number": letter.run_number, "msg_type": letter.msg_type,
        "subscription": letter.subscription, "destination": letter.destination,
        "reason": letter.reason, "created_at": letter.created_at.isoformat(),
        "resolved_at": letter.resolved_at.isoformat() if letter.resolved_at else None,
        "resolution": letter.resolution,
    }
    if body:
        info["body"] = letter.body
    return info
