"""REST usage per user and endpoint (R10.8), counted in memory and flushed to the store.

Counting each request with its own write would put the store's write lock on every page view;
a flusher adds the counts every few seconds (and at shutdown) instead.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from sqlalchemy.dialects import postgresql, sqlite

from epic_wfms.store.database import Database
from epic_wfms.store.schema import RestUsageRecord, utcnow

log = logging.getLogger(__name__)


class UsageRecorder:
    def __init__(self, db: Database, flush_s: float = 2.0) -> None:
        self.db = db
        self.flush_s = flush_s
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._errors: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="monitor-usage", daemon=True)

    def record(self, username: str, method: str, endpoint: str, failed: bool) -> None:
        key = (username[:100], method, endpoint[:255])
        with self._lock:
            self._calls[key] += 1
            if failed:
                self._errors[key] += 1

    def flush(self) -> int:
        with self._lock:
            calls, errors = self._calls, self._errors
            self._calls, self._errors = Counter(), Counter()
        if not calls:
            return 0
        now = utcnow()
        day = now.date().isoformat()
        rows = [{"username": user, "method": method, "endpoint": endpoint, "day": day,
                 "calls": n, "errors": errors[(user, method, endpoint)], "last_at": now}
                for (user, method, endpoint), n in calls.items()]
        try:
            with self.db.session() as session:  # replicas flush concurrently: add atomically
                dialect = postgresql if session.get_bind().dialect.name == "postgresql" \
                    else sqlite
                insert = dialect.insert(RestUsageRecord)
                table = RestUsageRecord.__table__.c
                session.execute(insert.on_conflict_do_update(
                    index_elements=["username", "method", "endpoint", "day"],
                    set_={"calls": table.calls + insert.excluded.calls,
                          "errors": table.errors + insert.excluded.errors,
                          "last_at": insert.excluded.last_at}), rows)
        except Exception:
            with self._lock:  # kept for the next flush
                self._calls.update(calls)
                self._errors.update(errors)
            raise
        return sum(calls.values())

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # the store is away: counts wait for the next flush
                log.exception("flushing REST usage failed; retrying in %.0f s", self.flush_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
