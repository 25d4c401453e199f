"""The testbed bridge: follows the ePIC testbed's topic and feeds its messages in our schema.

Part of the ``ingest`` role. Run control is re-published on ``/topic/epic.run`` carrying the
state the testbed reports (the state machine follows it); each ``stf_gen`` is located in the
DAQ buffer and handed to ``StfArrivals``, which announces it to ingest once its file is there.
Messages of other namespaces and of the testbed's own agents are ignored (logged once per
kind); a message that cannot be read is dead-lettered with the reason. The bridge also takes
replays (``epic-wfms deadletters replay``) on its own queue, so that a replayed testbed
message never reaches the testbed's agents again.
"""

from __future__ import annotations

import logging
import threading

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.testbed import (
    STF_TYPE,
    Ignored,
    check_followed,
    parse,
    run_control,
    stf_announcement,
)
from epic_wfms.errors import MalformedMessageError
from epic_wfms.model.testbed_time import zone
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.streaming.stf_arrival import StfArrivals, locate

log = logging.getLogger(__name__)

SUBSCRIPTION = "testbed-bridge"


def topic_subscription(bus_namespace: str) -> str:
    """The bridge's durable subscription to the testbed's topic, one per installation.

    The topic is not namespaced, and RabbitMQ derives a durable subscription's queue from the
    destination and the subscription name alone: with one name for all, installations sharing
    the broker would compete for the testbed's messages instead of each getting all of them."""
    return f"{SUBSCRIPTION}.{bus_namespace or 'epic-wfms'}"


class TestbedBridge:
    def __init__(self, ctx: StreamingContext) -> None:
        self.ctx = ctx
        self.settings = ctx.config.testbed
        self.tz = zone(self.settings.timezone)
        self.buffer = ctx.config.daq_buffer
        self.factory = m.MessageFactory(SUBSCRIPTION)
        self.arrivals = StfArrivals(ctx, self.factory)
        self._datasets: dict[str, str] = {}  # run_id -> dataset named by its run_imminent
        self._ignored: set[str] = set()
        self._lock = threading.Lock()

    def subscribe(self) -> None:
        transport = self.ctx.bus.transport
        transport.subscribe(dest.TESTBED, topic_subscription(self.ctx.config.bus.namespace),
                            self.on_raw)
        transport.subscribe(dest.TESTBED_REPLAY, f"{SUBSCRIPTION}-replay", self.on_raw)

    def on_raw(self, body: str) -> None:
        try:
            data = parse(body)
            check_followed(data, self.settings.namespace)
            if data["msg_type"] == STF_TYPE:
                self._on_stf(data)
            else:
                self._on_run_control(data)
        except Ignored as why:
            self._log_ignored(str(why))
        except MalformedMessageError as error:
            log.warning("dead-lettering a testbed message: %s", error)
            self.ctx.bus.ledger.dead_letter(SUBSCRIPTION, dest.TESTBED, body, str(error))

    def _on_run_control(self, data: dict) -> None:
        message = run_control(data, self.factory)
        if data["msg_type"] == "run_imminent" and isinstance(data.get("dataset"), str):
            with self._lock:
                self._datasets[str(data["run_id"])] = data["dataset"]
        self.ctx.bus.publish(dest.RUN_CONTROL, message)

    def _on_stf(self, data: dict) -> None:
        stf = stf_announcement(data, self.tz)
        with self._lock:
            dataset = self._datasets.get(stf.run_id, f"swf.{stf.run_id}.run")
        path = locate(self.buffer, self.settings.stf_path, {
            "run_id": stf.run_id, "dataset": dataset, "filename": stf.testbed_filename,
            "namespace": str(data.get("namespace") or "-"),
        })
        self.arrivals.announce(data, stf, path)

    def _log_ignored(self, why: str) -> None:
        with self._lock:
            first = why not in self._ignored
            self._ignored.add(why)
        if first:  # once per kind: the topic carries every agent's chatter
            log.info("ignoring testbed messages: %s", why)
