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
from epic_wfms.security.files import private_directory, private_file
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


def _pool_options(url: str) -> dict[str, Any]:
    """Each agent is one process: 10 (+5) connections keeps six agents under PostgreSQL's 100.
    No pre-ping: it costs a round trip per transaction (a fifth of an agent's time on the STF
    path). After a database restart the first statement on a stale connection fails instead;
    SQLAlchemy then invalidates the whole pool, and the bus redelivers the message."""
    if url.startswith("sqlite"):
        return {}
    return {"pool_size": 10, "max_overflow": 5, "pool_use_lifo": True}


def upsert(session: Session, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE the other given columns, on either backend."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    changed = {c: statement.excluded[c] for c in rows[0] if c not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed), rows)


class Database:
    """One bookkeeping database; ``url`` is any SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            store = Path(url.removeprefix("sqlite:///"))
            private_file(private_directory(store.parent) / store.name)
        self.engine = create_engine(url, **_pool_options(url))
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
