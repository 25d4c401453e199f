"""Read-only sessions for the monitor: pages must never take the store's write lock.

``Database.session`` begins SQLite transactions IMMEDIATE (one writer at a time); a page read
that way would queue behind, and block, the streaming agents. Here SQLite reads run in WAL's
snapshot mode with ``query_only`` on, and PostgreSQL reads use their own small pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker


class ReadStore:
    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        # no pre-ping: a page is a few short queries, a ping would add a round trip to each;
        # a connection found dead is invalidated by SQLAlchemy and the next request reconnects
        self.engine = create_engine(
            url, **({} if sqlite else {"pool_size": 4, "max_overflow": 4}))
        if sqlite:
            @event.listens_for(self.engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA query_only=ON")
                cursor.close()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()  # end the read snapshot

    def dispose(self) -> None:
        self.engine.dispose()
