"""STOMP transport (stomp.py): the production bus, ActiveMQ at E1, any STOMP 1.2 broker locally.

- one connection per subscription (its own receiver thread, as the in-process transport has),
  plus one for sending; client-individual acks sent only after the handler returned, so a
  crashed consumer's message is redelivered;
- topic subscriptions are durable (a consumer that is down misses nothing): the subscription
  headers of ActiveMQ Classic, Artemis and RabbitMQ are all sent, brokers ignore the others;
- messages are sent persistent; a lost connection is re-established with exponential backoff
  and every subscription re-made; a send counts only once the broker's RECEIPT arrived and is
  repeated otherwise, so nothing is lost while the broker restarts;
- ``namespace`` prefixes every destination so installations (or test runs) can share a broker;
  ``queue_expiry_s`` lets a throw-away namespace's queues expire once unused (``x-expires``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import stomp
from stomp.exception import StompException

from epic_wfms.bus.destinations import EXTERNAL, is_topic
from epic_wfms.bus.transport import RawHandler

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
                               headers={"client-id": f"{s.client_id}.{self.name}"})
            self.connection = connection
            for callback in self.on_connect:
                callback(connection)
            self.connected.set()

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
    def __init__(
        self, settings: StompSettings, destination: str, name: str, handler: RawHandler,
        transport: StompTransport,
    ) -> None:
        super().__init__(settings, name)
        self.destination = destination
        self.handler = handler
        self.transport = transport
        self.on_connect.append(self._subscribe)

    def _subscribe(self, connection: stomp.Connection12) -> None:
        s = self.settings
        headers = {"prefetch-count": str(s.prefetch), "activemq.prefetchSize": str(s.prefetch)}
        if s.queue_expiry_s:  # throw-away namespaces must not leave queues on the broker
            headers["x-expires"] = str(int(s.queue_expiry_s * 1000))
        if is_topic(self.destination):
            headers.update({
                "durable": "true", "auto-delete": "false", "persistent": "true",
                "activemq.subscriptionName": self.name, "durable-subscription-name": self.name,
                "subscription-type": "MULTICAST",
            })
        connection.subscribe(namespaced(self.destination, s.namespace), id=self.name,
                             ack="client-individual", headers=headers)

    def on_message(self, frame: stomp.utils.Frame) -> None:
        self.transport._begin()
        try:
            self.handler(frame.body)
            self.connection.ack(frame.headers["ack"])
        except (StompException, OSError) as error:  # ack lost with the connection: redelivered
            log.warning("%s: ack failed (%s); the message will be redelivered", self.name, error)
        except Exception:
            log.exception("%s: handler crashed; message left unacknowledged", self.name)
        finally:
            self.transport._end()


class StompTransport:
    def __init__(self, settings: StompSettings) -> None:
        self.settings = settings
        self._sender = _Link(settings, "sender")
        self._subscriptions: list[_Subscription] = []
        self._send_lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition()
        self._sender.open()

    def send(self, destination: str, body: str) -> None:
        headers = {"persistent": "true"}
        if not is_topic(destination) and self.settings.queue_expiry_s:
            # a queue is declared by whichever frame comes first: both must agree on its expiry
            headers["x-expires"] = str(int(self.settings.queue_expiry_s * 1000))
        target = namespaced(destination, self.settings.namespace)
        with self._send_lock:
            while not self._send_confirmed(target, body, headers):
                log.warning("send to %s not confirmed; resending after reconnect", target)
                self._sender.reconnect()

    def _send_confirmed(self, target: str, body: str, headers: dict[str, str]) -> bool:
        """Send and wait for the broker's RECEIPT: a frame written into a dying socket is not
        delivered, so only a receipt counts. A resend may duplicate; consumers are idempotent."""
        self._sender.connected.wait()
        receipt = uuid.uuid4().hex
        confirmed = self._sender.expect_receipt(receipt)
        try:
            self._sender.connection.send(target, body, content_type="application/json",
                                         headers={**headers, "receipt": receipt})
        except (StompException, OSError) as error:
            log.warning("send to %s failed: %s", target, error)
            return False
        deadline = time.monotonic() + self.settings.receipt_timeout_s
        while not confirmed.wait(0.05):
            if not self._sender.connected.is_set() or time.monotonic() > deadline:
                return False
        return True

    def subscribe(self, destination: str, subscription: str, handler: RawHandler) -> None:
        link = _Subscription(self.settings, destination, subscription, handler, self)
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

    def _end(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Only this process's in-flight handlers are visible; the broker's backlog is not."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        for link in [*self._subscriptions, self._sender]:
            link.close()
