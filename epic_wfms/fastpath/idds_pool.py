"""The fast path's standing pool provisioned through iDDS's prompt service and Harvester.

``fastpath.pool.provider: idds``. At ``run_imminent`` the pool asks iDDS for the run's
workers (``create_workflow_task``: iDDS submits a PanDA task of that many jobs at the E1's
queue); Harvester keeps a pilot per job, and each job runs ``fastpath/pilot_worker.py``,
which takes TF slices over the broker until the run is over. The workers have no database:
this pool, in the fast-path process, records what they report on ``FASTPATH_WORKERS``
(registration, heartbeats, each slice's payload answer, exit) with the same compare-and-set
steps as the embedded pool, so a slice is completed once whatever the broker redelivers.

- A worker silent for ``fastpath.pool.lost_after_s`` is recorded dead (its pilot is gone);
  its slice in hand went back to the broker with its connection. PanDA retries its job and
  Harvester starts a new pilot: the replacement registers like any worker.
- The autoscaler's decisions become ``adjust_worker`` requests. iDDS 2.6.21 stores them
  without the worker count, so (``fastpath.pool.idds.adjust_applies_count: false``) the pool
  also grows by a request of its own for the extra workers, and shrinks by retiring idle
  workers (``worker_retire``).
- After ``end_run``, once the run's slices are done: ``pool_drain`` (every worker exits 0,
  its job finishes) and ``close_workflow_task`` for each of the run's requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select, update

from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.fastpath import slices
from epic_wfms.fastpath.autoscaler import Observation
from epic_wfms.fastpath.pool import PoolDuties
from epic_wfms.fastpath.results import publish_failure, record_result
from epic_wfms.fastpath.worker_pool import requeue
from epic_wfms.lifecycle.fastpath import WORKER, SliceStatus, WorkerStatus
from epic_wfms.store.schema import (
    FastPathScalingRecord,
    FastPathWorkerRecord,
    TfSliceRecord,
    utcnow,
)
from epic_wfms.streaming.context import StreamingContext
from epic_wfms.wfms.idds.prompt_pool import PromptReplies, StompPromptChannel, WorkerPool

log = logging.getLogger(__name__)
REQUESTED = "requested from iDDS at run_imminent"
REQUEST_RETRY_S = 30.0  # a request iDDS has not answered by then is sent again
WORKER_MESSAGES = {"worker_registered", "worker_heartbeat", "slice_processed", "worker_exited"}


@dataclass
class RemoteWorker:
    name: str
    run_number: int | None
    last_seen: float
    busy: int = 0
    retiring: bool = False


@dataclass
class RunRequests:
    """What was asked of iDDS for one run: its pool and the requests added to it."""

    pool: WorkerPool
    parts: list[WorkerPool] = field(default_factory=list)
    arrived: int = 0  # workers that registered
    lost: int = 0  # workers found dead (PanDA retries their jobs: replacements come)
    retired: int = 0  # workers told to leave (their jobs finish: no replacement)
    sent_at: float = 0.0  # when a request was last sent
    inherited: bool = False  # asked for by an earlier incarnation of this pool (restart)
    closed: set[int] = field(default_factory=set)  # request ids closed as surplus

    @property
    def requested(self) -> int:
        """Workers asked for, in all of the run's requests."""
        return sum(part.workers for part in self.parts)

    def sent(self, part: WorkerPool) -> None:
        """A request for ``part`` went to iDDS."""
        self.parts.append(part)
        self.sent_at = time.monotonic()

    @property
    def pending(self) -> int:
        """Workers asked for (or to be replaced) that have not registered yet."""
        return max(self.requested + self.lost - self.arrived - self.retired, 0)


class IddsSlicePool(PoolDuties):
    thread_name = "fastpath-idds-pool"

    def __init__(self, ctx: StreamingContext) -> None:
        from epic_wfms.installation import stomp_settings

        super().__init__(ctx)
        self.idds = self.config.pool.idds
        self.workers: dict[str, RemoteWorker] = {}
        self.requests: dict[int, RunRequests] = {}
        self.first_slice_at: float | None = None
        self.first_worker_at: float | None = None
        self.provisioned_at: float | None = None
        settings = stomp_settings(ctx.config, f"{ctx.producer}.idds-prompt", namespace="")
        if self.idds.broker_vhost:
            settings = replace(settings, vhost=self.idds.broker_vhost)
        self._settings = settings
        self.channel: StompPromptChannel | None = None
        self.replies: PromptReplies | None = None

    # -- the contract (fastpath/pool.py) ---------------------------------------------------------
    def _connect(self) -> StompPromptChannel:
        """The links to iDDS's prompt service (made at the first need: ``recover`` may
        provision before ``subscribe``)."""
        if self.channel is None:
            self.replies = PromptReplies(self._settings, self.idds.reply_topic)
            self.channel = StompPromptChannel(self._settings, self.idds.prompt_topic)
        return self.channel

    def subscribe(self) -> None:
        self._connect()
        self.follow_run_control()
        self.ctx.bus.subscribe(dest.FASTPATH_WORKERS, "fastpath-pool.workers", self.on_worker,
                               msg_types=WORKER_MESSAGES)
        self.start_duties()

    def provision(self, run_number: int) -> None:
        """At run_imminent: ask iDDS for the run's target number of workers, once."""
        with self._lock:
            if run_number in self.requests:
                return
            self.run_number, self.draining = run_number, False
            self.drained.clear()
            self.provisioned_at = time.monotonic()
            queue = self.ctx.config.wfms.panda.queues[self.idds.site]
            pool = WorkerPool(
                run_number=run_number, queue=queue, panda_site=self.idds.site,
                workers=self.config.pool.target, cores=self.idds.cores,
                memory_per_core_mb=self.idds.memory_per_core_mb,
                walltime_s=self.idds.walltime_s, transformation=self.idds.transformation,
                idle_timeout_s=self.idds.idle_timeout_s,
                processing_type=self.idds.processing_type, vo=self.ctx.config.wfms.panda.vo)
            if self._requested_before(run_number):  # a restart: the workers are out there
                self.requests[run_number] = RunRequests(pool, parts=[pool], inherited=True)
                log.info("run %s: its workers were asked for before this process started; "
                         "they are adopted as they report", run_number)
                return
            self.requests[run_number] = RunRequests(pool)
            self._request(pool, REQUESTED, before=0)

    def _requested_before(self, run_number: int) -> bool:
        with self.ctx.db.session() as session:
            return session.scalar(select(func.count()).select_from(FastPathScalingRecord).where(
                FastPathScalingRecord.run_number == run_number,
                FastPathScalingRecord.reason == REQUESTED)) > 0

    @property
    def size(self) -> int:
        with self._lock:
            return sum(1 for w in self.workers.values()
                       if w.run_number == self.run_number and not w.retiring)

    def wait_drained(self, timeout: float) -> bool:
        """True once the run was drained and each of its workers said it left (or was found
        dead): the pilot jobs end after the pool does."""
        deadline = time.monotonic() + timeout
        if not self.drained.wait(timeout):
            return False
        while time.monotonic() < deadline:
            with self._lock:
                if not any(w.run_number == self.run_number for w in self.workers.values()):
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.stop_duties()
        for link in (self.channel, self.replies):
            if link is not None:
                link.close()

    # -- requests to iDDS ------------------------------------------------------------------------
    def _request(self, pool: WorkerPool, reason: str, before: int) -> None:
        self._connect().send(pool.create_message())
        self.requests[pool.run_number].sent(pool)
        log.info("run %s: asked iDDS for %d fast-path workers at %s (%s)", pool.run_number,
                 pool.workers, pool.queue, pool.name)
        self.record_scaling(before, before + pool.workers, reason, backlog=0, slice_s=None)

    def _unanswered(self, runs: RunRequests, now: float) -> None:
        """iDDS's prompt topic keeps nothing for a prompt service that was not listening
        (restarting, not yet subscribed): a request unanswered for REQUEST_RETRY_S is sent
        again; if both copies were taken after all, the surplus request is closed."""
        if runs.inherited:  # their answers went to the earlier incarnation
            return
        answered = self._ids(runs.pool.run_number)
        if len(answered) < len(runs.parts) and now - runs.sent_at > REQUEST_RETRY_S:
            for part in runs.parts[len(answered):]:
                log.warning("run %s: iDDS did not answer %s within %ss; sending it again",
                            part.run_number, part.name, REQUEST_RETRY_S)
                self.channel.send(part.create_message())
            runs.sent_at = now
        for reply in answered[len(runs.parts):]:
            request_id = reply.get("request_id")
            if request_id is not None and request_id not in runs.closed:
                log.warning("run %s: iDDS took a request twice; closing request %s",
                            runs.pool.run_number, request_id)
                self.channel.send(runs.pool.close_message(request_id))
                runs.closed.add(request_id)

    def _ids(self, run_number: int) -> list[dict]:
        """iDDS's answers to the run's requests (request, transform and PanDA task ids)."""
        return self.replies.of("created_workflow_task", run_number) if self.replies else []

    def _resize(self, to: int, reason: str, backlog: int, slice_s: float | None,
                before: int) -> None:
        runs = self.requests[self.run_number]
        first = (self._ids(self.run_number) or [{}])[0]
        # what iDDS's prompt service is there for (2.6.21 keeps all but the count)
        self.channel.send(runs.pool.adjust_message(
            to, request_id=first.get("request_id"), transform_id=first.get("transform_id"),
            workload_id=first.get("workload_id")))
        if to > before and not self.idds.adjust_applies_count:
            extra = runs.pool.extra(len(runs.parts), to - before)
            self.channel.send(extra.create_message())
            runs.sent(extra)
        elif to < before:
            with self._lock:
                idle = sorted((w for w in self.workers.values() if w.run_number ==
                               self.run_number and not w.retiring), key=lambda w: w.busy)
                leaving = idle[:before - to]
                for worker in leaving:
                    worker.retiring = True
                runs.retired += len(leaving)
            self.ctx.publish(dest.FASTPATH_POOL, "worker_retire", m.PoolCommand(
                run_number=self.run_number, workers=[w.name for w in leaving],
                reason=f"scaled down: {reason}"), self.run_number)
        self.record_scaling(before, to, reason, backlog, slice_s)

    # -- what the workers report ------------------------------------------------------------------
    def on_worker(self, message: m.Message) -> None:
        body = message.body
        with self._lock:
            worker = self.workers.get(body.worker)
            adopted = message.msg_type == "worker_heartbeat" and worker is None
            if (message.msg_type == "worker_registered" and worker is None) or adopted:
                worker = self.workers[body.worker] = RemoteWorker(
                    body.worker, body.run_number, time.monotonic())
                if (runs := self.requests.get(body.run_number)) is not None:
                    runs.arrived += 1
            elif worker is not None:
                worker.last_seen = time.monotonic()
        if message.msg_type == "worker_registered":
            self._registered(body)
        elif adopted:  # registered with an earlier incarnation of this pool
            self._registered(m.WorkerNews(worker=body.worker, run_number=body.run_number,
                                          detail="adopted after a restart of the pool"))
        elif message.msg_type == "worker_heartbeat" and worker is not None:
            worker.busy = body.busy
        elif message.msg_type == "slice_processed":
            self._processed(body)
        elif message.msg_type == "worker_exited":
            self._ended(body.worker, WorkerStatus.EXITED, body.detail or "exited")

    def _registered(self, news: m.WorkerNews) -> None:
        if self.first_worker_at is None and news.run_number == self.run_number:
            self.first_worker_at = time.monotonic()
        with self.ctx.db.session() as session:
            new = session.get(FastPathWorkerRecord, news.worker) is None
            if new:
                session.add(FastPathWorkerRecord(
                    name=news.worker, run_number=news.run_number, pid=news.pid,
                    status=WORKER.check(None, WorkerStatus.REGISTERED), registered_at=utcnow(),
                    slices_done=0, detail=news.detail))
        if new:
            self.ctx.publish(dest.FASTPATH_POOL, "worker_registered", news, news.run_number)

    def _processed(self, done: m.SliceProcessed) -> None:
        work, reply = done.work, done.reply
        self.activity()
        if self.first_slice_at is None:
            self.first_slice_at = time.monotonic()
        attempt = slices.claim(self.ctx.db, work.slice_name, done.worker)
        if attempt is None:
            log.info("%s from %s: the slice is done or being done already; ignored",
                     work.slice_name, done.worker)
            return
        with self.ctx.db.session() as session:  # the worker's own start: slice time is real
            session.execute(update(TfSliceRecord).where(
                TfSliceRecord.name == work.slice_name, TfSliceRecord.worker == done.worker,
                TfSliceRecord.attempts == attempt).values(started_at=done.started_at))
        if reply.get("ok"):
            record_result(self.ctx, work, done.worker, attempt, reply)
            return
        error = reply.get("error", "payload failed")
        status = slices.release(self.ctx.db, work.slice_name, done.worker, attempt, error,
                                self.config.max_attempts)
        if status is not None:
            publish_failure(self.ctx, work, done.worker, attempt, status, error)
            if status == SliceStatus.QUEUED:
                requeue(self.ctx, work)

    def _ended(self, name: str, status: WorkerStatus, detail: str) -> None:
        with self._lock:
            worker = self.workers.pop(name, None)
        with self.ctx.db.session() as session:
            changed = session.execute(update(FastPathWorkerRecord).where(
                FastPathWorkerRecord.name == name,
                WORKER.where(FastPathWorkerRecord.status, status),
            ).values(status=status, ended_at=utcnow(), detail=detail[-500:])).rowcount
        if changed:
            run = worker.run_number if worker else self.run_number
            msg_type = "worker_replaced" if status == WorkerStatus.DEAD else "worker_exited"
            self.ctx.publish(dest.FASTPATH_POOL, msg_type, m.WorkerNews(
                worker=name, run_number=run, detail=detail), run)

    # -- duties -----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        lost = [w for w in list(self.workers.values())
                if now - w.last_seen > self.config.pool.lost_after_s]
        for worker in lost:
            if (runs := self.requests.get(worker.run_number)) is not None \
                    and not worker.retiring:
                runs.lost += 1
            self._ended(worker.name, WorkerStatus.DEAD,
                        f"silent for {now - worker.last_seen:.0f}s: its pilot is gone (PanDA "
                        "retries the job, Harvester starts a new pilot)")
        if self.run_number is None or self.drained.is_set():
            return
        self._unanswered(self.requests[self.run_number], now)
        queued, processing, oldest_wait = slices.open_count(self.ctx.db, self.run_number)
        if queued or processing:
            self.last_activity = now
        if self.draining:
            if not queued and not processing and (
                    now - self.last_activity >= self.config.drain_grace_s):
                self.drain()
            return
        runs = self.requests[self.run_number]
        size = self.size + runs.pending
        slice_s = slices.recent_slice_s(self.ctx.db, self.run_number)
        decision = self.autoscaler.decide(Observation(
            size=size, backlog=queued, busy=processing, slice_s=slice_s,
            oldest_wait_s=oldest_wait), now)
        if decision is not None:
            self._resize(decision.to_size, decision.reason, queued, slice_s, size)

    def drain(self) -> None:
        """End of run, slices done: every worker exits; iDDS closes the run's requests."""
        run = self.run_number
        self.ctx.publish(dest.FASTPATH_POOL, "pool_drain", m.PoolCommand(
            run_number=run, reason=f"end of run {run}, its slices are done"), run)
        runs = self.requests[run]
        ids = [r for r in self._ids(run) if r.get("request_id") not in runs.closed]
        for reply in ids or [{"request_id": None}]:  # iDDS finds an unanswered one by run
            self.channel.send(runs.pool.close_message(reply.get("request_id")))
        self.drained.set()
        log.info("fast-path pool (iDDS) drained for run %s: %d request(s) closed", run,
                 len(ids or [None]))

    def timing(self) -> dict:
        """Seconds from run_imminent to the first worker registered and to the first slice
        a worker finished (None: not yet)."""
        def since(moment: float | None) -> float | None:
            if self.provisioned_at is None or moment is None:
                return None
            return round(moment - self.provisioned_at, 2)

        return {"first_worker_after_s": since(self.first_worker_at),
                "first_slice_after_s": since(self.first_slice_at)}
