"""Engine and sessions. SQLite gets WAL + immediate transactions so concurrent writers queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Insert, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from epic_wfms.errors import EpicWfmsError
from epic_wfms.store.migrate import upgrade_schema
from epic_wfms.store.schema import StateTransitionRecord


class AppendOnlyViolation(EpicWfmsError):
    """Someone tried to rewrite history."""


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _guard_append_only(session_factory: sessionmaker) -> None:
    @event.listens_for(session_factory, "before_flush")
    def _refuse_history_rewrite(session: Session, _ctx: Any, _instances: Any) -> None:
        for obj in list(session.dirty) + list(session.deleted):
            if isinstance(obj, StateTransitionRecord):
                raise AppendOnlyViolation(
                    "state transition history is append-only",
                    f"an update or delete of transition #{obj.id} was attempted",
                    "record a new transition instead of changing an old one",
                )


def insert_ignoring_duplicates(session: Session, table: Any) -> Insert:
    """INSERT ... ON CONFLICT DO NOTHING on either backend: bulk writes stay idempotent."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class Database:
    """One bookkeeping database; ``url`` is any SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # each agent is one process: 10 (+5) connections keeps six agents under PostgreSQL's 100
        pool = {} if url.startswith("sqlite") else {"pool_size": 10, "max_overflow": 5}
        self.engine = create_engine(url, pool_pre_ping=True, **pool)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; queueing our own threads on a lock is far cheaper
        # than letting them spin in SQLite's busy handler (which sleeps up to 100 ms a try).
        self._serial: AbstractContextManager = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        _guard_append_only(self._sessions)

    def create_schema(self) -> None:
        """Bring the schema to the latest Alembic revision (creates it on an empty database)."""
        upgrade_schema(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error."""
        with self._serial, self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
