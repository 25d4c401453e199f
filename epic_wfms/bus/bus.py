"""The message bus: typed publish/subscribe with idempotent consumers and dead letters.

Delivery is at-least-once; each subscription records the ``msg_id``s it has handled in a
``DeliveryLedger`` (the bookkeeping store), so a redelivered or duplicated message changes
nothing. A handler error is retried with backoff; after ``max_attempts`` the message is
dead-lettered with the error. A database outage is no handler error: it counts toward no
attempt and is raised to the transport, which delivers the message again with backoff until
the database is back (``store/outage.py``). A malformed message, or one a handler refuses
(``MalformedMessageError``, e.g. a path outside its area), is dead-lettered at once, alone:
the rest of its batch goes on. Nothing is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from epic_wfms.bus.messages import Message, decode, encode
from epic_wfms.bus.transport import Transport
from epic_wfms.errors import MalformedMessageError
from epic_wfms.store.outage import database_down

log = logging.getLogger(__name__)

MessageHandler = Callable[[Message], None]
BatchHandler = Callable[[list[Message]], None]


class DeliveryLedger(Protocol):
    """Persistent record of handled messages and dead letters (implemented by the store)."""

    def already_handled(self, subscription: str, msg_id: str) -> bool: ...

    def mark_handled(self, subscription: str, msg_id: str, msg_type: str) -> None: ...

    def handled_among(self, subscription: str, msg_ids: list[str]) -> set[str]: ...

    def mark_all_handled(self, subscription: str, messages: list[tuple[str, str]]) -> None:
        """``(msg_id, msg_type)`` pairs, in one write."""
        ...

    def dead_letter(self, subscription: str, destination: str, body: str, reason: str) -> None: ...


class MessageBus:
    def __init__(
        self,
        transport: Transport,
        ledger: DeliveryLedger,
        *,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.05,
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s

    def publish(self, destination: str, message: Message) -> None:
        self.transport.send(destination, encode(message))

    def publish_many(self, messages: list[tuple[str, Message]]) -> None:
        """Publish several messages in one round trip to the broker (pipelined)."""
        if messages:
            self.transport.send_many([(d, encode(message)) for d, message in messages])

    def publish_raw(self, destination: str, body: str) -> None:
        """Inject a wire body as-is (adapters, replays, tests of malformed input)."""
        self.transport.send(destination, body)

    def subscribe(
        self, destination: str, subscription: str, handler: MessageHandler, *,
        msg_types: set[str] | None = None, track: bool = True, durable: bool = True,
    ) -> None:
        """``msg_types``: handle only these (others are acknowledged untouched);
        ``track=False``: no idempotency ledger (e.g. a log); ``durable=False`` on a topic:
        an observer that sees only what is broadcast while it runs (no backlog is kept)."""

        def deliver(body: str) -> None:
            self._deliver(destination, subscription, handler, body, msg_types, track)

        self.transport.subscribe(destination, subscription, deliver, durable)

    def subscribe_batch(
        self, destination: str, subscription: str, handler: BatchHandler, *,
        max_batch: int = 64, msg_types: set[str] | None = None,
    ) -> None:
        """Throughput mode: ``handler`` gets every new message waiting (up to ``max_batch``)
        and does its bookkeeping in bulk. If it fails, each message of the batch is retried
        alone (and dead-lettered alone), so one bad message cannot hold up the others."""

        def deliver(bodies: list[str]) -> None:
            self._deliver_batch(destination, subscription, handler, bodies, msg_types)

        self.transport.subscribe_batch(destination, subscription, deliver, max_batch)

    def _deliver_batch(
        self, destination: str, subscription: str, handler: BatchHandler, bodies: list[str],
        msg_types: set[str] | None,
    ) -> None:
        messages: dict[str, tuple[Message, str]] = {}
        for body in bodies:
            message = self._decode(destination, subscription, body)
            if message is not None and (msg_types is None or message.msg_type in msg_types):
                messages.setdefault(message.msg_id, (message, body))  # a duplicate counts once
        handled = self.ledger.handled_among(subscription, list(messages)) if messages else set()
        new = [(message, body) for msg_id, (message, body) in messages.items()
               if msg_id not in handled]
        if not new:
            return
        try:
            handler([message for message, _body in new])
        except Exception as error:
            if database_down(error):
                raise  # the transport delivers the batch again once the database is back
            log.warning("batch of %d on %s failed (%s: %s); retrying one by one", len(new),
                        subscription, type(error).__name__, error)
            for _message, body in new:
                self._deliver(destination, subscription, lambda msg: handler([msg]), body)
            return
        self.ledger.mark_all_handled(
            subscription, [(message.msg_id, message.msg_type) for message, _body in new])

    def _decode(self, destination: str, subscription: str, body: str) -> Message | None:
        """The message, or None once a malformed body is dead-lettered (at once: no retry)."""
        try:
            return decode(body)  # raises nothing but MalformedMessageError
        except MalformedMessageError as error:
            log.warning("dead-lettering malformed message on %s: %s", destination, error)
            self.ledger.dead_letter(subscription, destination, body, str(error))
            return None

    def unsubscribe(self, destination: str, subscription: str) -> None:
        self.transport.unsubscribe(destination, subscription)

    def _deliver(
        self, destination: str, subscription: str, handler: MessageHandler, body: str,
        msg_types: set[str] | None = None, track: bool = True,
    ) -> None:
        message = self._decode(destination, subscription, body)
        if message is None or (msg_types is not None and message.msg_type not in msg_types):
            return
        if track and self.ledger.already_handled(subscription, message.msg_id):
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                handler(message)
            except MalformedMessageError as error:  # refused: no retry can change that
                log.warning("dead-lettering refused %s on %s: %s", message.msg_type,
                            subscription, error)
                self.ledger.dead_letter(subscription, destination, body, f"refused: {error}")
                return
            except Exception as error:  # handler bugs and transient failures alike
                if database_down(error):
                    raise  # not the message's fault: the transport retries with backoff
                if attempt == self.max_attempts:
                    reason = f"handler failed {attempt} times: {type(error).__name__}: {error}"
                    log.error("dead-lettering %s on %s: %s", message.msg_type, subscription, reason)
                    self.ledger.dead_letter(subscription, destination, body, reason)
                    return
                time.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            else:
                if track:
                    self.ledger.mark_handled(subscription, message.msg_id, message.msg_type)
                return

    def wait_idle(self, timeout: float = 30.0) -> bool:
        return self.transport.wait_idle(timeout)

    def close(self) -> None:
        self.transport.close()
