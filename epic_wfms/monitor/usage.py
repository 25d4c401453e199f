"""REST usage per user and endpoint (R10.8), counted in memory and flushed to the store.

Counting each request with its own write would put the store's write lock on every page view;
a flusher adds the counts every few seconds (and at shutdown) instead.
"""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import RestUsageRecord, utcnow


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
        with self.db.session() as session:
            for (user, method, endpoint), n in calls.items():
                row = session.scalar(select(RestUsageRecord).where(
                    RestUsageRecord.username == user, RestUsageRecord.method == method,
                    RestUsageRecord.endpoint == endpoint, RestUsageRecord.day == day))
                if row is None:
                    row = RestUsageRecord(username=user, method=method, endpoint=endpoint,
                                          day=day, calls=0, errors=0)
                    session.add(row)
                row.calls += n
                row.errors += errors[(user, method, endpoint)]
                row.last_at = now
        return sum(calls.values())

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.flush()
