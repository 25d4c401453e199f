"""In-process transport: one thread per subscription, topics fan out, queues compete."""

from __future__ import annotations

import logging
import queue
import threading
import time

from epic_wfms.bus.destinations import is_topic
from epic_wfms.bus.transport import RawBatchHandler, RawHandler
from epic_wfms.store.outage import Backoff

log = logging.getLogger(__name__)
_STOP = object()
_POLL_S = 0.5  # how soon an unsubscribed consumer notices


class InProcessTransport:
    """Real concurrent delivery inside one process; the embedded default."""

    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue] = {}  # one per topic subscription or per queue
        self._topic_subs: dict[str, list[str]] = {}
        self._threads: list[threading.Thread] = []
        self._stops: dict[tuple[str, str], threading.Event] = {}  # (destination, subscription)
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._closed = False

    def _queue_key(self, destination: str, subscription: str) -> str:
        return f"{destination}#{subscription}" if is_topic(destination) else destination

    def send(self, destination: str, body: str) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("transport is closed")
            if is_topic(destination):
                subs = self._topic_subs.get(destination, [])
                keys = [self._queue_key(destination, s) for s in subs]
            else:
                keys = [destination]
                self._queues.setdefault(destination, queue.Queue())
            for key in keys:
                self._pending += 1
                self._queues[key].put(body)

    def send_many(self, messages: list[tuple[str, str]]) -> None:
        for destination, body in messages:
            self.send(destination, body)

    def subscribe(self, destination: str, subscription: str, handler: RawHandler,
                  durable: bool = True) -> None:  # in-process: lives as long as the process
        self.subscribe_batch(destination, subscription, lambda bodies: handler(bodies[0]), 1)

    def subscribe_batch(
        self, destination: str, subscription: str, handler: RawBatchHandler, max_batch: int
    ) -> None:
        key = self._queue_key(destination, subscription)
        with self._lock:
            if is_topic(destination):
                subs = self._topic_subs.setdefault(destination, [])
                if subscription in subs:
                    raise ValueError(f"subscription {subscription!r} already on {destination}")
                subs.append(subscription)
            inbox = self._queues.setdefault(key, queue.Queue())
        stop = self._stops[(destination, subscription)] = threading.Event()
        thread = threading.Thread(
            target=self._consume, args=(inbox, handler, max_batch, stop),
            name=f"bus:{subscription}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _consume(
        self, inbox: queue.Queue, handler: RawBatchHandler, max_batch: int,
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            try:
                body = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if body is _STOP:
                return
            if stop.is_set():  # unsubscribed while waiting: the message is the others'
                inbox.put(body)
                return
            bodies = [body]
            while len(bodies) < max_batch:
                try:
                    more = inbox.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    inbox.put(_STOP)  # seen after this batch is handled
                    break
                bodies.append(more)
            try:
                _until_handled(handler, bodies, stop)
            finally:
                with self._lock:
                    self._pending -= len(bodies)
                    if self._pending == 0:
                        self._idle.notify_all()

    def unsubscribe(self, destination: str, subscription: str) -> None:
        """Stop one consumer after the message it is handling (a queue keeps its backlog for
        the others; a topic subscription stops receiving)."""
        with self._lock:
            stop = self._stops.pop((destination, subscription), None)
            if stop is None:
                raise ValueError(f"no subscription {subscription!r} on {destination}")
            stop.set()
            if is_topic(destination):  # its own inbox: what it has not handled goes with it
                self._topic_subs[destination].remove(subscription)
                inbox = self._queues.pop(self._queue_key(destination, subscription))
                self._pending -= inbox.qsize()
                if self._pending == 0:
                    self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            inboxes = list(self._queues.values())
        for inbox in inboxes:
            for _ in self._threads:
                inbox.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=5)


def _until_handled(handler: RawBatchHandler, bodies: list[str], stop: threading.Event) -> None:
    """The bus layer raises only what is not the message's fault (a database outage): the
    same messages again with backoff, as the broker would redeliver them, until it passes."""
    backoff = Backoff()
    while True:
        try:
            handler(bodies)
            return
        except Exception:
            delay = backoff.next()
            if backoff.failures == 1 or backoff.failures % 12 == 0:
                log.exception("subscription handler failed (try %d); retrying in %.1fs",
                              backoff.failures, delay)
            if stop.wait(delay):
                return
