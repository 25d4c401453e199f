"""STOMP transport (stomp.py): the production bus, ActiveMQ at E1, any STOMP 1.2 broker locally.

- one connection per subscription (its own receiver thread, as the in-process transport has),
  plus one for sending; client-individual acks sent only after the handler returned, so a
  crashed consumer's message is redelivered;
- topic subscriptions are durable (a consumer that is down misses nothing): the subscription
  headers of ActiveMQ Classic, Artemis and RabbitMQ are all sent, brokers ignore the others;
  their identity (client-id, name) survives restarts; observers (``durable=False``, e.g. the
  monitor agent's log) see only what is broadcast while they run;
- a handler that raises (the bus layer raises only what is not the message's fault, such as
  a database outage) gets the same frames again with backoff until it succeeds, so a blip
  never leaves a subscription stalled on unacknowledged messages; handlers run on the
  subscription's own worker thread, never on the connection's receiver thread (which must
  keep reading heartbeats during a long outage);
- messages are sent persistent; a lost connection is re-established with exponential backoff
  and every subscription re-made; a send counts only once the broker's RECEIPT arrived and is
  repeated otherwise, so nothing is lost while the broker restarts;
- ``namespace`` prefixes every destination so installations (or test runs) can share a broker;
  ``queue_expiry_s`` lets a throw-away namespace's queues expire once unused (``x-expires``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import stomp
from stomp.exception import StompException

from epic_wfms.bus.destinations import EXTERNAL, is_topic
from epic_wfms.bus.transport import RawBatchHandler, RawHandler
from epic_wfms.store.outage import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StompSettings:
    host: str = "127.0.0.1"
    port: int = 61613
    user: str = "guest"
    password: str = "guest"
    vhost: str = "/"
    namespace: str = ""
    client_id: str = "epic-wfms"
    heartbeat_ms: int = 10_000
    prefetch: int = 8
    queue_expiry_s: float | None = None
    receipt_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 5.0


def namespaced(destination: str, namespace: str) -> str:
    if not namespace or destination in EXTERNAL:
        return destination
    kind, _, name = destination[1:].partition("/")
    return f"/{kind}/{namespace}.{name}"


class _Link(stomp.ConnectionListener):
    """One STOMP connection that reconnects itself and re-makes its subscription."""

    def __init__(self, settings: StompSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.connection: stomp.Connection12 | None = None
        self.closing = False
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._reconnecting = threading.Lock()
        self._receipts: dict[str, threading.Event] = {}
        self.on_connect: list = []

    def open(self) -> None:
        delay = self.settings.reconnect_initial_s
        while not self.closing:
            try:
                self._connect_once()
                return
            except (StompException, OSError) as error:
                log.warning("%s: broker unreachable (%s); retrying in %.1fs", self.name, error,
                            delay)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)

    def _connect_once(self) -> None:
        s = self.settings
        with self._lock:
            self._retire_old_connection()
            connection = stomp.Connection12(
                [(s.host, s.port)], heartbeats=(s.heartbeat_ms, s.heartbeat_ms), vhost=s.vhost,
                reconnect_attempts_max=1, try_loopback_connect=False,
            )
            connection.set_listener("link", self)
            connection.connect(s.user, s.password, wait=True,
                               headers={"client-id": self.client_id()})
            self.connection = connection
            for callback in self.on_connect:
                callback(connection)
            self.connected.set()

    def client_id(self) -> str:
        """The sending connection: unique per process (agent name, host, pid)."""
        return f"{self.settings.client_id}.{self.name}"

    def expect_receipt(self, receipt: str) -> threading.Event:
        event = threading.Event()
        self._receipts[receipt] = event
        return event

    def on_receipt(self, frame: stomp.utils.Frame) -> None:
        event = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
        if event is not None:
            event.set()

    def _retire_old_connection(self) -> None:
        """Detach from a broken connection so its late events cannot trigger reconnects."""
        old, self.connection = self.connection, None
        if old is not None:
            old.remove_listener("link")
            with contextlib.suppress(StompException, OSError):
                old.disconnect()

    def on_disconnected(self) -> None:
        if self.closing:
            return  # our own close
        log.warning("%s: disconnected from the broker; reconnecting", self.name)
        self.reconnect()

    def reconnect(self) -> None:
        """Start one background reconnection (a second request while one runs is a no-op)."""
        self.connected.clear()
        if self.closing or not self._reconnecting.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.open()
            finally:
                self._reconnecting.release()

        threading.Thread(target=run, name=f"reconnect:{self.name}", daemon=True).start()

    def close(self) -> None:
        self.closing = True
        if self.connection is not None and self.connection.is_connected():
            with contextlib.suppress(StompException):
                self.connection.disconnect()


class _Subscription(_Link):
    """A subscription; its worker thread hands the handler whatever frames are waiting (up to
    ``max_batch``) and acknowledges each after the handler."""

    def __init__(
        self, settings: StompSettings, destination: str, name: str, handler: RawBatchHandler,
        transport: StompTransport, max_batch: int = 1, durable: bool = True,
    ) -> None:
        super().__init__(settings, name)
        self.destination = destination
        self.durable = durable
        self.handler = handler
        self.transport = transport
        self.max_batch = max_batch
        self._inbox: queue.Queue[tuple[stomp.Connection12, stomp.utils.Frame]] = queue.Queue()
        self.on_connect.append(self._subscribe)
        threading.Thread(target=self._drain, name=f"batch:{name}", daemon=True).start()

    def client_id(self) -> str:
        """Stable across restarts: brokers key a durable topic subscription by client-id and
        subscription name (ActiveMQ; Artemis names its queue ``client-id.name``; RabbitMQ
        derives its queue from them), so a restarted agent finds the messages sent while it
        was down instead of leaving an orphan subscription behind. Several agents of a role
        (scale-out) share it: competing consumers of one subscription."""
        return f"{self.settings.namespace or 'epic-wfms'}.{self.name}"

    def _subscribe(self, connection: stomp.Connection12) -> None:
        s = self.settings
        prefetch = str(max(s.prefetch, 2 * self.max_batch))
        headers = {"prefetch-count": prefetch, "activemq.prefetchSize": prefetch}
        if s.queue_expiry_s:  # throw-away namespaces must not leave queues on the broker
            headers["x-expires"] = str(int(s.queue_expiry_s * 1000))
        if is_topic(self.destination) and self.durable:
            headers.update({
                "durable": "true", "auto-delete": "false", "persistent": "true",
                "activemq.subscriptionName": self.name, "durable-subscription-name": self.name,
                "subscription-type": "MULTICAST",
            })
        receipt = uuid.uuid4().hex  # subscribed only once the broker says so: what is sent
        confirmed = self.expect_receipt(receipt)  # afterwards reaches this subscription
        connection.subscribe(namespaced(self.destination, s.namespace), id=self.name,
                             ack="client-individual", headers={**headers, "receipt": receipt})
        if not confirmed.wait(s.receipt_timeout_s):
            raise StompException(f"{self.name}: the broker did not confirm the subscription "
                                 f"to {self.destination} within {s.receipt_timeout_s:.0f}s")

    def on_message(self, frame: stomp.utils.Frame) -> None:
        self.transport._begin()
        self._inbox.put((self.connection, frame))

    def _drain(self) -> None:
        while not self.closing:
            try:
                batch = [self._inbox.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            finally:
                self.transport._end(len(batch))

    def _handle(self, batch: list[tuple[stomp.Connection12, stomp.utils.Frame]]) -> None:
        backoff = Backoff()
        while True:
            try:
                self.handler([frame.body for _connection, frame in batch])
                break
            except Exception as error:
                if self.closing:
                    log.warning("%s: handler failed while closing (%s); the broker redelivers",
                                self.name, error)
                    return
                delay = backoff.next()
                if backoff.failures == 1 or backoff.failures % 12 == 0:
                    log.warning("%s: handler failed (%s: %s); retrying (try %d, next in %.1fs)",
                                self.name, type(error).__name__,
                                str(error).strip().splitlines()[0][:200] if str(error) else "",
                                backoff.failures, delay)
                time.sleep(delay)
        if backoff.failures:
            log.warning("%s: handler succeeded after %d failed tries", self.name,
                        backoff.failures)
        for connection, frame in batch:
            if connection is not self.connection:
                continue  # delivered on a connection since lost: the broker redelivers it
            try:
                connection.ack(frame.headers["ack"])
            # lost with the connection, the broker redelivers it; stomp.py raises
            # AttributeError when the connection dropped its socket under our ack
            except (StompException, OSError, AttributeError) as error:
                log.warning("%s: ack failed (%s); the message will be redelivered", self.name,
                            error)


class StompTransport:
    def __init__(self, settings: StompSettings) -> None:
        self.settings = settings
        self._sender = _Link(settings, "sender")
        self._subscriptions: list[_Subscription] = []
        self._send_lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition()
        self._sender.open()

    def send(self, destination: str, body: str, headers: dict[str, str] | None = None) -> None:
        """``headers``: extra STOMP headers another system's consumers read (iDDS's prompt
        service reads ``msg_type``); our own messages carry everything in the body."""
        self.send_many([(destination, body)], headers)

    def send_many(self, messages: list[tuple[str, str]],
                  headers: dict[str, str] | None = None) -> None:
        """Frames are written back to back and their RECEIPTs awaited together (pipelined)."""
        with self._send_lock:
            while messages:
                messages = self._send_confirmed(messages, headers or {})
                if messages:
                    log.warning("%d send(s) not confirmed; resending after reconnect",
                                len(messages))
                    self._sender.reconnect()

    def _headers(self, destination: str) -> dict[str, str]:
        headers = {"persistent": "true"}
        if not is_topic(destination) and self.settings.queue_expiry_s:
            # a queue is declared by whichever frame comes first: both must agree on its expiry
            headers["x-expires"] = str(int(self.settings.queue_expiry_s * 1000))
        return headers

    def _send_confirmed(self, messages: list[tuple[str, str]], extra: dict[str, str]
                        ) -> list[tuple[str, str]]:
        """Send and wait for the broker's RECEIPTs: a frame written into a dying socket is not
        delivered, so only a receipt counts. Returns the unconfirmed messages (to resend: a
        resend may duplicate; consumers are idempotent)."""
        self._sender.connected.wait()
        waiting: list[tuple[threading.Event, tuple[str, str]]] = []
        for destination, body in messages:
            receipt = uuid.uuid4().hex
            confirmed = self._sender.expect_receipt(receipt)
            connection = self._sender.connection
            if connection is None:  # replaced by a reconnection right now: send again after
                return [message for _event, message in waiting] + messages[len(waiting):]
            try:
                connection.send(
                    namespaced(destination, self.settings.namespace), body,
                    content_type="application/json",
                    headers={**extra, **self._headers(destination), "receipt": receipt})
            except (StompException, OSError) as error:
                log.warning("send to %s failed: %s", destination, error)
                return [message for _event, message in waiting] + messages[len(waiting):]
            waiting.append((confirmed, (destination, body)))
        deadline = time.monotonic() + self.settings.receipt_timeout_s
        for confirmed, _message in waiting:
            while not confirmed.wait(0.05):
                if not self._sender.connected.is_set() or time.monotonic() > deadline:
                    return [message for event, message in waiting if not event.is_set()]
        return []

    def subscribe(self, destination: str, subscription: str, handler: RawHandler,
                  durable: bool = True) -> None:
        self.subscribe_batch(destination, subscription, lambda bodies: handler(bodies[0]), 1,
                             durable)

    def subscribe_batch(
        self, destination: str, subscription: str, handler: RawBatchHandler, max_batch: int,
        durable: bool = True,
    ) -> None:
        link = _Subscription(self.settings, destination, subscription, handler, self, max_batch,
                             durable)
        self._subscriptions.append(link)
        link.open()

    def unsubscribe(self, destination: str, subscription: str) -> None:
        """Close the subscription's connection: its unacknowledged messages are redelivered."""
        for link in self._subscriptions:
            if link.destination == destination and link.name == subscription:
                self._subscriptions.remove(link)
                link.close()
                return
        raise ValueError(f"no subscription {subscription!r} on {destination}")

    def _begin(self) -> None:
        with self._idle:
            self._pending += 1

    def _end(self, count: int = 1) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Only this process's in-flight handlers are visible; the broker's backlog is not."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        for link in [*self._subscriptions, self._sender]:
            link.close()
