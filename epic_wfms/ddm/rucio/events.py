"""Rucio's events, as its messaging daemon (hermes) publishes them to the STOMP broker.

Each message on ``/topic/rucio.events`` has a header ``event_type`` and a JSON body
``{"event_type", "payload", "created_at"}``. Types used here: ``rule_ok`` and ``rule_progress``
(rules created with notify), ``transfer-queued`` / ``transfer-done`` / ``transfer-failed``,
``create_dts``, ``close``. Attaching a file to a dataset emits no event.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import stomp

from epic_wfms.config import BusConfig
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


class RucioEventListener(stomp.ConnectionListener):
    """Subscribe to hermes' topic and hand every event to the registered handlers."""

    def __init__(self, bus: BusConfig, destination: str = "/topic/rucio.events") -> None:
        self.bus, self.destination = bus, destination
        self._handlers: list[Handler] = []
        self._conn: stomp.Connection12 | None = None
        self._lock = threading.Lock()

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def start(self) -> RucioEventListener:
        conn = stomp.Connection12([(self.bus.host, self.bus.port)], vhost=self.bus.vhost,
                                  heartbeats=(10_000, 10_000))
        conn.set_listener("rucio-events", self)
        try:
            conn.connect(self.bus.user, self.bus.password, wait=True)
        except stomp.exception.StompException as error:
            raise DataManagementError(
                f"cannot subscribe to Rucio events on {self.bus.host}:{self.bus.port}",
                repr(error), "start the STOMP broker or fix the bus section",
            ) from error
        conn.subscribe(self.destination, id=f"rucio-events-{uuid.uuid4().hex[:8]}", ack="auto")
        self._conn = conn
        return self

    def stop(self) -> None:
        if self._conn is not None and self._conn.is_connected():
            self._conn.disconnect()
        self._conn = None

    def on_message(self, frame) -> None:
        try:
            event = parse_event(frame.body)
        except DataManagementError as error:
            log.warning("ignored message on %s: %s", self.destination, error)
            return
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # one failing consumer must not silence the others
                log.exception("handling Rucio event %s failed", event.event_type)
