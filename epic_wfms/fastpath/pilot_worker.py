"""The fast path's standing worker as a pilot job: what each PanDA job of a run's pool runs.

At ``run_imminent`` the pool (``fastpath/idds_pool.py``) asks iDDS's prompt service for the
run's workers; iDDS submits a PanDA task of that many jobs, Harvester starts a pilot per job,
and the pilot runs the site's transformation (``fastpath.pool.idds.transformation``, e.g.
``epic-fastpath``), which runs this module with the job's arguments as iDDS sets them::

    python -m epic_wfms.fastpath.pilot_worker --config <installation YAML> \\
        --run_id <run> --idle_timeout <s>

The worker has no database; it talks to the pool over the broker only:

- it starts its payload process once (the calibration), then says ``worker_registered``;
- it takes TF slices from the express and the normal slice queue as a competing consumer,
  one at a time, express first, and sends each payload answer as ``slice_processed``; a
  slice is acknowledged only after that, so a worker killed mid-slice leaves it to the
  broker, which gives it to another worker; the pool completes each slice once;
- it sends ``worker_heartbeat`` every ``fastpath.pool.heartbeat_s``;
- it exits 0 at ``pool_drain`` for its run (end of run, slices done), at ``worker_retire``
  naming it (scaled down), after ``--idle_timeout`` s without a slice, or on SIGTERM (the
  pilot ending the job); a slice delivered while it leaves goes back to its queue. A
  payload that dies ends the worker with exit code 70: PanDA retries the job, and Harvester
  starts a new pilot for it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from epic_wfms.bus import MessageBus, MessageFactory
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.config import Config, load_config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.fastpath.express import ExpressFirst
from epic_wfms.fastpath.runners import PayloadDied, start_payload
from epic_wfms.installation import build_transport
from epic_wfms.store.schema import utcnow
from epic_wfms.streaming.screening import daq_file

log = logging.getLogger("epic_wfms.fastpath.pilot_worker")
EXIT_PAYLOAD_DIED = 70  # EX_SOFTWARE: the job fails, PanDA retries it


class _NoLedger:
    """The worker keeps no bookkeeping store: every subscription is untracked (a redelivered
    slice is harmless, the pool completes a slice once); a message it cannot read goes to
    its log, which the pilot keeps with the job."""

    def already_handled(self, subscription: str, msg_id: str) -> bool:
        return False

    def mark_handled(self, subscription: str, msg_id: str, msg_type: str) -> None:
        pass

    def handled_among(self, subscription: str, msg_ids: list[str]) -> set[str]:
        return set()

    def mark_all_handled(self, subscription: str, messages: list[tuple[str, str]]) -> None:
        pass

    def dead_letter(self, subscription: str, destination: str, body: str, reason: str) -> None:
        log.error("dead letter on %s (%s): %s; body %.500s", destination, subscription, reason,
                  body)


def worker_name(run_number: int) -> str:
    """``fpw-<run>-panda<PandaID>@<host>``: the pilot exports the job's ``PANDAID``."""
    job = os.environ.get("PANDAID")
    who = f"panda{job}" if job and job.isdigit() else f"pid{os.getpid()}"
    return f"fpw-{run_number:06d}-{who}@{socket.gethostname()}"


class PilotWorker:
    def __init__(self, config: Config, run_number: int, idle_timeout_s: float) -> None:
        self.config, self.run_number = config, run_number
        self.idle_timeout_s = idle_timeout_s
        self.name = worker_name(run_number)
        self.factory = MessageFactory(f"epic-wfms.fastpath.{self.name}")
        self.bus = MessageBus(build_transport(config, self.name), _NoLedger())
        self.gate = ExpressFirst()
        self.turn = threading.Lock()  # one slice at a time
        self.leaving = threading.Event()
        self.reason = ""
        self.busy = 0
        self.last_slice = time.monotonic()
        self.exit_code = 0
        self.payload = start_payload(config.fastpath.runner,
                                     config.fastpath.payload.calibration_channels)

    # -- messages ------------------------------------------------------------------------------
    def publish(self, destination: str, msg_type: str, body: m._Payload) -> None:
        self.bus.publish(destination, self.factory.make(msg_type, body,
                                                        run_number=self.run_number))

    def news(self, msg_type: str, detail: str) -> None:
        self.publish(dest.FASTPATH_WORKERS, msg_type, m.WorkerNews(
            worker=self.name, run_number=self.run_number, pid=self.payload.pid, detail=detail))

    def leave(self, reason: str, exit_code: int = 0) -> None:
        if not self.leaving.is_set():
            self.reason, self.exit_code = reason, exit_code
            self.leaving.set()

    def on_command(self, message: m.Message) -> None:
        command: m.PoolCommand = message.body
        if command.run_number != self.run_number:
            return
        if message.msg_type == "pool_drain" or self.name in command.workers:
            self.leave(f"{message.msg_type}: {command.reason}")

    def on_slice(self, message: m.Message) -> None:
        work: m.SliceWork = message.body
        daq_file(self.config, work.path, None, f"tf_slice {work.slice_name}")
        with self.gate.turn(work.express), self.turn:
            if self.leaving.is_set():  # never started: another worker takes it
                queue = dest.FASTPATH_EXPRESS if work.express else dest.FASTPATH_SLICES
                self.publish(queue, "tf_slice", work)
                return
            self.busy = 1
            started = utcnow()
            request = {"slice": {"name": work.slice_name, "path": work.path,
                                 "first_tf": work.first_tf, "tf_count": work.tf_count,
                                 "kind": work.kind},
                       "params": self.config.fastpath.payload.model_dump(
                           exclude={"calibration_channels"})}
            try:
                reply: dict[str, Any] = self.payload.run(request,
                                                         self.config.fastpath.slice_timeout_s)
            except PayloadDied as error:
                reply = {"ok": False, "error": f"payload died: {error}"}
                self.leave(f"payload died: {error}", EXIT_PAYLOAD_DIED)
            self.publish(dest.FASTPATH_WORKERS, "slice_processed", m.SliceProcessed(
                worker=self.name, work=work, reply=reply, started_at=started))
            self.busy = 0
            self.last_slice = time.monotonic()

    # -- life ----------------------------------------------------------------------------------
    def run(self) -> int:
        self.bus.subscribe(dest.FASTPATH_POOL, f"{self.name}.commands", self.on_command,
                           msg_types={"pool_drain", "worker_retire"}, track=False,
                           durable=False)
        self.news("worker_registered", f"payload ready (init {self.payload.init_s}s) in a "
                                       f"pilot job of run {self.run_number}")
        slice_queues = [(dest.FASTPATH_EXPRESS, "fastpath-workers.express"),
                        (dest.FASTPATH_SLICES, "fastpath-workers.slices")]
        for queue, subscription in slice_queues:
            self.bus.subscribe(queue, subscription, self.on_slice, msg_types={"tf_slice"},
                               track=False)
        beat = self.config.fastpath.pool.heartbeat_s
        while not self.leaving.wait(beat):
            if not self.payload.alive():
                self.leave(f"payload process {self.payload.pid} ended", EXIT_PAYLOAD_DIED)
                break
            if not self.busy and time.monotonic() - self.last_slice > self.idle_timeout_s:
                self.leave(f"no slice for {self.idle_timeout_s:g}s (idle timeout)")
                break
            self.publish(dest.FASTPATH_WORKERS, "worker_heartbeat", m.WorkerBeat(
                worker=self.name, run_number=self.run_number, busy=self.busy))
        with self.turn:  # the slice in hand is finished and sent
            for queue, subscription in slice_queues:  # unacknowledged deliveries go back
                self.bus.unsubscribe(queue, subscription)
        self.payload.close()
        self.news("worker_exited", self.reason)
        self.bus.transport.close()
        log.info("%s leaves: %s", self.name, self.reason)
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m epic_wfms.fastpath.pilot_worker",
        description="A standing fast-path worker in a pilot job (arguments as iDDS's prompt "
                    "service gives them to the job).")
    parser.add_argument("--config", type=Path, required=True,
                        help="the installation's configuration (broker, fast path)")
    parser.add_argument("--run_id", type=int, required=True)
    parser.add_argument("--idle_timeout", type=float, default=600.0)
    parser.add_argument("--streaming_mode", default="activemq")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.streaming_mode != "activemq":
        print(f"streaming mode {args.streaming_mode!r} is not supported: ePIC's workers take "
              "slices from the broker (activemq)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        if config.bus.transport != "stomp":
            print(f"{args.config}: bus.transport is {config.bus.transport!r}; a pilot-job "
                  "worker needs the broker (bus.transport: stomp)", file=sys.stderr)
            return 2
        worker = PilotWorker(config, args.run_id, args.idle_timeout)
    except EpicWfmsError as error:
        print(error, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: worker.leave("SIGTERM: the pilot ends the job"))
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
