"""Rucio's events, as its messaging daemon (hermes) publishes them to the STOMP broker.

Each message on ``/topic/rucio.events`` has a header ``event_type`` and a JSON body
``{"event_type", "payload", "created_at"}``. Types used here: ``rule_ok`` and ``rule_progress``
(rules created with notify), ``transfer-queued`` / ``transfer-done`` / ``transfer-failed``,
``create_dts``, ``close``. Attaching a file to a dataset emits no event.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.ddm.interface import DID
from epic_wfms.errors import DataManagementError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RucioEvent:
    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None

    @property
    def did(self) -> DID | None:
        scope, name = self.payload.get("scope"), self.payload.get("name")
        return DID(scope, name) if scope and name else None

    @property
    def rule_id(self) -> str | None:
        return self.payload.get("rule_id") or self.payload.get("rule-id")


def parse_event(body: str | bytes) -> RucioEvent:
    """One hermes message; a body that is not one is refused with the reason."""
    try:
        data = json.loads(body)
        return RucioEvent(str(data["event_type"]).lower(), dict(data.get("payload") or {}),
                          data.get("created_at"))
    except (ValueError, KeyError, TypeError) as error:
        raise DataManagementError(
            "not a Rucio event message", f"{error!r} in {str(body)[:200]!r}",
            "only Rucio's hermes should publish to the events destination",
        ) from error


Handler = Callable[[RucioEvent], None]


class RucioEventListener:
    """Follow hermes' topic through the bus's STOMP transport (acknowledged after the
    handlers ran, reconnecting with the broker) and hand every event to the handlers."""

    def __init__(self, settings: StompSettings, destination: str = "/topic/rucio.events"
                 ) -> None:
        self.settings, self.destination = settings, destination
        self._handlers: list[Handler] = []
        self._transport: StompTransport | None = None

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def start(self) -> RucioEventListener:
        transport = StompTransport(self.settings)
        try:  # an observer: events broadcast while we are away are not kept for us
            transport.subscribe(self.destination, f"rucio-events-{uuid.uuid4().hex[:8]}",
                                self.on_message, durable=False)
        except Exception as error:
            transport.close()
            raise DataManagementError(
                f"cannot subscribe to Rucio events on {self.settings.host}:"
                f"{self.settings.port}", repr(error),
                "start the STOMP broker or fix the bus section") from error
        self._transport = transport
        return self

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None

    def on_message(self, body: str) -> None:
        try:
            event = parse_event(body)
        except DataManagementError as error:
            log.warning("ignored message on %s: %s", self.destination, error)
            return
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # one failing consumer must not silence the others
                log.exception("handling Rucio event %s failed", event.event_type)
