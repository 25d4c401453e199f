"""Destination naming (docs/messages.md): topics broadcast, queues carry work to one consumer.

``/topic/epic.<subject>`` is seen by every subscriber; ``/queue/epic.<subject>`` is shared by
competing consumers. The same names are used unchanged on a STOMP broker.
"""

from __future__ import annotations

RUN_CONTROL = "/topic/epic.run"  # run lifecycle as sent by the DAQ/run control
STATE = "/topic/epic.state"  # state_changed broadcasts
EVENTS = "/topic/epic.events"  # registered/archived/job/merge/integrity news for monitors
PROCESSED = "/topic/epic.processed"  # stf_processed: merging's input, and monitors'
STF_INGEST = "/queue/epic.stf.ingest"  # stf_available from the DAQ, one ingest consumer
TF_SAMPLES = "/topic/epic.tf.sample"  # TF samples for the fast path
ARCHIVE = "/queue/epic.archive"  # archive work, independent of processing (R4.7)
FASTPATH_SLICES = "/queue/epic.fastpath.slices"  # tf_slice work, competing standing workers
FASTPATH_EXPRESS = "/queue/epic.fastpath.express"  # alarm-grade tf_slice work, drained first
FASTPATH_RESULTS = "/topic/epic.fastpath.results"  # slice_result, event-level quantities
FASTPATH_POOL = "/topic/epic.fastpath.pool"  # worker_* and pool_scaled news, pool commands
FASTPATH_WORKERS = "/queue/epic.fastpath.workers"  # pilot-job workers -> the pool that records
ALARMS = "/topic/epic.alarms"  # alarm notifications (R3.11)
TESTBED = "/topic/epictopic"  # the ePIC testbed's single topic
TESTBED_REPLAY = "/queue/epic.testbed.replay"  # testbed messages replayed to the bridge only
EXTERNAL = frozenset({TESTBED})  # owned by other systems: never prefixed by our namespace


def process_queue(site: str) -> str:
    """Per-E1 processing work queue, e.g. ``/queue/epic.process.E1_BNL``."""
    return f"/queue/epic.process.{site}"


def is_topic(destination: str) -> bool:
    if destination.startswith("/topic/"):
        return True
    if destination.startswith("/queue/"):
        return False
    raise ValueError(
        f"destination {destination!r} must start with '/topic/' (broadcast) or '/queue/' (work)"
    )
