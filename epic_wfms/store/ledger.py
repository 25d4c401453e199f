"""The bus's delivery ledger on the store: handled msg_ids per subscription, dead letters."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from epic_wfms.store.database import Database, insert_ignoring_duplicates
from epic_wfms.store.deadletters import attribution
from epic_wfms.store.schema import ConsumedMessageRecord, DeadLetterRecord


class StoreLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def already_handled(self, subscription: str, msg_id: str) -> bool:
        with self.db.session() as session:
            return session.get(ConsumedMessageRecord, (subscription, msg_id)) is not None

    def mark_handled(self, subscription: str, msg_id: str, msg_type: str) -> None:
        try:
            with self.db.session() as session:
                session.add(ConsumedMessageRecord(
                    subscription=subscription, msg_id=msg_id, msg_type=msg_type
                ))
        except IntegrityError:
            pass  # a concurrent redelivery already marked it: idempotent by design

    def handled_among(self, subscription: str, msg_ids: list[str]) -> set[str]:
        with self.db.session() as session:
            return set(session.scalars(select(ConsumedMessageRecord.msg_id).where(
                ConsumedMessageRecord.subscription == subscription,
                ConsumedMessageRecord.msg_id.in_(msg_ids),
            )))

    def mark_all_handled(self, subscription: str, messages: list[tuple[str, str]]) -> None:
        rows = [{"subscription": subscription, "msg_id": msg_id, "msg_type": msg_type}
                for msg_id, msg_type in messages]
        with self.db.session() as session:
            session.execute(insert_ignoring_duplicates(session, ConsumedMessageRecord), rows)

    def dead_letter(self, subscription: str, destination: str, body: str, reason: str) -> None:
        """Kept as received, as far as the store can hold it: NUL shown as ``\\x00`` (no
        PostgreSQL text holds one), at most ``MAX_KEPT`` characters; attributed to the run
        whose summary must show it."""
        run_number, msg_type = attribution(body)
        with self.db.session() as session:
            session.add(DeadLetterRecord(
                subscription=subscription[:100], destination=_storable(destination)[:255],
                body=_storable(body), reason=_storable(reason),
                run_number=run_number, msg_type=msg_type,
            ))


MAX_KEPT = 100_000


def _storable(text: str | bytes) -> str:
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    text = str(text).encode("utf-8", errors="backslashreplace").decode("utf-8")
    text = text.replace("\x00", "\\x00")
    return text if len(text) <= MAX_KEPT else text[:MAX_KEPT] + f"... [{len(text)} characters]"
