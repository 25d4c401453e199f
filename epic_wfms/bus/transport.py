"""What a transport must do: move raw message bodies to destinations, at-least-once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

RawHandler = Callable[[str], None]
RawBatchHandler = Callable[[list[str]], None]


class Transport(Protocol):
    """At-least-once delivery: a body is acknowledged only after the handler returns.

    Topics fan out to every named subscription; queues are shared by all subscriptions on
    the same destination (competing consumers). Durable subscriptions keep their backlog.
    """

    def send(self, destination: str, body: str) -> None: ...

    def send_many(self, messages: list[tuple[str, str]]) -> None:
        """Send ``(destination, body)`` pairs; returns once the broker has taken all of them."""
        ...

    def subscribe(self, destination: str, subscription: str, handler: RawHandler,
                  durable: bool = True) -> None:
        """``durable=False`` on a topic: an observer that sees what is broadcast while it is
        connected (no backlog kept for it, nothing persisted on its behalf)."""
        ...

    def subscribe_batch(
        self, destination: str, subscription: str, handler: RawBatchHandler, max_batch: int
    ) -> None:
        """Deliver up to ``max_batch`` bodies at once, whatever is waiting (never waits to
        fill a batch: a lone message goes at once); all are acknowledged after the handler."""
    def unsubscribe(self, destination: str, subscription: str) -> None:
        """Stop delivering to ``subscription`` (after the message in hand, if any)."""
        ...

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or being handled (used for draining and tests)."""
        ...

    def close(self) -> None: ...
