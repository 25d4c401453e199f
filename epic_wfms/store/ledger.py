"""The bus's delivery ledger on the store: handled msg_ids per subscription, dead letters."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from epic_wfms.store.database import Database
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

    def dead_letter(self, subscription: str, destination: str, body: str, reason: str) -> None:
        with self.db.session() as session:
            session.add(DeadLetterRecord(
                subscription=subscription, destination=destination, body=body, reason=reason
            ))
