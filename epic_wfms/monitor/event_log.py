"""The monitor agent's first duty: follow state changes and stream events, one log line each,
and keep running counts (the web monitor comes with the monitor issue)."""

from __future__ import annotations

import logging
from collections import Counter

from epic_wfms.bus import MessageBus
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m

log = logging.getLogger("epic_wfms.monitor")


class EventLog:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.counts: Counter[str] = Counter()

    def subscribe(self) -> None:
        for destination, name in ((dest.STATE, "monitor-state"), (dest.EVENTS, "monitor-events"),
                                  (dest.PROCESSED, "monitor-processed")):
            self.bus.subscribe(destination, name, self.on_message, track=False, durable=False)

    def on_message(self, message: m.Message) -> None:
        self.counts[message.msg_type] += 1
        e = message.envelope
        body = message.body.model_dump(mode="json")
        log.info("%s run=%s %s/%s from %s: %s", e.msg_type, e.run_number, e.state, e.substate,
                 e.producer, body)

    def summary(self) -> str:
        return ", ".join(f"{kind}={n}" for kind, n in sorted(self.counts.items()))
