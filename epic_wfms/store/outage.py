"""Riding out a database outage (R12.1): what counts as one, and waiting it out.

A PostgreSQL restart or a network blip makes every statement fail with an ``OperationalError``
(or an ``InterfaceError`` on a connection cut mid-way); SQLAlchemy then invalidates the pool,
and the next statement after the outage opens fresh connections. Nothing needs a restart:
the loops of the agents (message handlers, heartbeats, periodic duties, job ends) wait here
with exponential backoff and try again; no outage counts toward a message's dead-lettering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

T = TypeVar("T")

INITIAL_S = 0.2
MAX_S = 5.0
_NOT_OUTAGES = ("no such table", "no such column", "syntax error")  # SQLite's bugs, not blips


def database_down(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) says the database cannot be reached now."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, OperationalError | InterfaceError):
            return not any(what in str(error.orig).lower() for what in _NOT_OUTAGES)
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class Backoff:
    """Delays 0.2, 0.4, ... up to 5 s; ``reset`` after a success."""

    def __init__(self, initial_s: float = INITIAL_S, max_s: float = MAX_S) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.delay = initial_s
        self.failures = 0

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.max_s)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.delay, self.failures = self.initial_s, 0


class Stopped(Exception):
    """The loop was asked to stop while it waited for the database."""


def retry_while_down(call: Callable[[], T], what: str,
                     stop: threading.Event | Callable[[], bool] | None = None) -> T:
    """``call()``, repeated with backoff for as long as the database is down (other errors
    pass through). Raises ``Stopped`` if ``stop`` is set meanwhile."""
    backoff = Backoff()
    while True:
        try:
            result = call()
        except Exception as error:
            if not database_down(error):
                raise
            delay = backoff.next()
            if backoff.failures == 1 or backoff.failures % 12 == 0:
                log.warning("%s: the database is unreachable (%s); retrying every <=%.0fs",
                            what, _first_line(error), MAX_S)
            if _wait(stop, delay):
                raise Stopped(what) from error
            continue
        if backoff.failures:
            log.warning("%s: the database is back after %d failed tries", what,
                        backoff.failures)
        return result


def wait_for_database(url_or_engine: str | Engine, what: str,
                      stop: threading.Event | Callable[[], bool] | None = None) -> None:
    """Return once a connection to the database succeeds (an agent started during an
    outage waits here instead of exiting)."""
    engine = url_or_engine if isinstance(url_or_engine, Engine) else create_engine(
        str(url_or_engine), poolclass=NullPool)

    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        retry_while_down(ping, what, stop)
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def _wait(stop: threading.Event | Callable[[], bool] | None, delay: float) -> bool:
    if stop is None:
        time.sleep(delay)
        return False
    if isinstance(stop, threading.Event):
        return stop.wait(delay)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if stop():
            return True
        time.sleep(min(0.1, delay))
    return stop()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
