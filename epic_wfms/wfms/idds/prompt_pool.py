"""The fast path's standing worker pool, requested the way iDDS's prompt service takes it.

iDDS's prompt service (``idds-prompt``) listens on ``/topic/panda.workflow`` for
``create_workflow_task`` (a PanDA task whose jobs are long-lived workers: worker count, cores,
memory per core, walltime, site), ``adjust_worker`` (rescale) and ``close_workflow_task``
(end of run). The same requests go over REST with idds-client's ``WorkflowTaskClient``.
This builds those messages for an ePIC run and sends them through STOMP or REST.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.errors import ConfigurationError
from epic_wfms.wfms.idds.errors import IddsError

PROMPT_DESTINATION = "/topic/panda.workflow"
REPLY_DESTINATION = "/topic/panda.workers"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerPool:
    """A run's standing workers as iDDS's prompt service takes them: ``workers`` PanDA jobs
    at ``queue`` (a queue of PanDA site ``panda_site``, the E1), each running
    ``transformation`` with iDDS's arguments ``--run_id <run> --idle_timeout <s>``."""

    run_number: int
    queue: str  # PanDA queue of the E1 farm
    workers: int
    panda_site: str | None = None  # the queue's PanDA site; JEDI runs the jobs only there
    cores: int = 1
    memory_per_core_mb: int = 2000
    walltime_s: int = 12 * 3600
    transformation: str | None = None  # None: iDDS's default (its prompt wrapper)
    idle_timeout_s: int = 120
    processing_type: str = "epic_fastpath"
    requester: str = "epic-wfms"
    campaign: str = "EIC"
    vo: str = "epic"
    working_group: str = "EIC"
    part: int = 0  # 0: the run's pool; n > 0: workers added to it later (``extra``)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cores < 1 or self.memory_per_core_mb < 1:
            raise ConfigurationError(
                f"worker pool for run {self.run_number}: workers={self.workers}, "
                f"cores={self.cores}, memory={self.memory_per_core_mb}",
                why="a pool needs at least one worker with one core and some memory",
                fix="give positive worker count, cores and memory per core")

    @property
    def name(self) -> str:
        """The iDDS request's (and PanDA task's) name: one per run and queue, and part."""
        extra = f".x{self.part}" if self.part else ""
        return f"swf.{self.run_number:06d}.{self.queue}.prompt{extra}"

    def extra(self, part: int, workers: int) -> WorkerPool:
        """More workers for the same run as a request of their own (iDDS 2.6.21 stores
        ``adjust_worker`` without its worker count: docs/panda-idds.md)."""
        return replace(self, part=part, workers=workers)

    def workflow(self) -> dict:
        """The ``workflow`` dict of a create_workflow_task request."""
        attributes = {"num_workers": self.workers, "walltime": self.walltime_s,
                      "core_count": self.cores, "memory_per_core": self.memory_per_core_mb,
                      "vo": self.vo, "queue": self.queue, "working_group": self.working_group,
                      "processing_type": self.processing_type,
                      "idle_timeout": self.idle_timeout_s}
        if self.transformation:
            attributes["trans_path"] = self.transformation
        content = {"run_id": self.run_number, "core_count": self.cores,
                   "target_worker_count": self.workers,
                   "memory_per_core": self.memory_per_core_mb, "streaming_mode": "activemq",
                   # what iDDS's prompt service puts into the PanDA task it submits
                   "panda_attributes": attributes}
        if self.panda_site:
            content["site"] = self.panda_site  # iDDS: the task's PandaSite
        return {"scope": "epic", "name": self.name, "requester": self.requester,
                "username": self.requester, "transform_tag": "EIC", "cloud": "US",
                "campaign": self.campaign, "content": content}

    def create_message(self) -> dict:
        return {"msg_type": "create_workflow_task", "run_id": self.run_number,
                "content": {"workflow": self.workflow()}}

    def adjust_message(self, workers: int, request_id: int | None = None,
                       transform_id: int | None = None, workload_id: int | None = None) -> dict:
        if workers < 0:
            raise ConfigurationError(f"cannot scale run {self.run_number}'s pool to {workers}",
                                     fix="give a worker count >= 0")
        return {"msg_type": "adjust_worker", "run_id": self.run_number,
                "content": {"run_id": self.run_number, "request_id": request_id,
                            "transform_id": transform_id, "workload_id": workload_id,
                            "core_count": self.cores, "memory_per_core": self.memory_per_core_mb,
                            "site": self.panda_site, "target_worker_count": workers}}

    def close_message(self, request_id: int | None = None) -> dict:
        return {"msg_type": "close_workflow_task", "run_id": self.run_number,
                "content": {"run_id": self.run_number, "request_id": request_id}}


class StompPromptChannel:
    """Publishes prompt-service requests on the broker, as ePIC's agents do, through the
    bus's STOMP transport (confirmed by the broker's receipt, reconnecting). ``settings``
    name the broker iDDS listens on (``namespace=""``: the destination is iDDS's)."""

    def __init__(self, settings: StompSettings, destination: str = PROMPT_DESTINATION) -> None:
        self.destination = destination
        self._transport = StompTransport(settings)

    def send(self, message: dict) -> None:
        self._transport.send(self.destination, json.dumps(message), headers={
            "msg_type": message["msg_type"], "run_id": str(message["run_id"])})

    def close(self) -> None:
        self._transport.close()


class PromptReplies:
    """What iDDS's prompt service answered on its reply topic (``created_workflow_task``
    with the request, transform and PanDA task ids; ``adjusted_worker``...), by run."""

    def __init__(self, settings: StompSettings, destination: str = REPLY_DESTINATION) -> None:
        self._lock = threading.Lock()
        self._replies: list[dict] = []
        self._transport = StompTransport(settings)
        self._transport.subscribe(destination, f"{settings.client_id}.replies", self._on_reply,
                                  durable=False)

    def _on_reply(self, body: str) -> None:
        try:
            reply = json.loads(body)
        except ValueError:
            log.warning("iDDS reply is no JSON, ignored: %.200s", body)
            return
        if isinstance(reply, dict) and isinstance(reply.get("content"), dict):
            with self._lock:
                self._replies.append(reply)

    def of(self, msg_type: str, run_number: int) -> list[dict]:
        """The contents of the replies of that type for the run, in arrival order."""
        with self._lock:
            return [r["content"] for r in self._replies if r.get("msg_type") == msg_type
                    and str(r["content"].get("run_id", r.get("run_id"))) == str(run_number)]

    def close(self) -> None:
        self._transport.close()


class RestPromptChannel:
    """The same requests over iDDS's REST API (idds-client's ``WorkflowTaskClient`` calls).

    idds-server 2.6.21 stores a ``create_workflow_task`` and then answers 500 (its REST
    handler unpacks the handler's 7-key answer into 6 names). A create that failed is looked
    up by its name: stored, it is taken, and its request id returned."""

    def __init__(self, host: str, auth: dict | None = None) -> None:
        from idds.client.client import Client

        self.client = Client(host=host, auth=auth)

    def send(self, message: dict) -> Any:
        content = message["content"]
        try:
            if message["msg_type"] == "create_workflow_task":
                return self.client.create_workflow_task(content["workflow"])
            if message["msg_type"] == "adjust_worker":
                return self.client.adjust_worker(content["request_id"], content["transform_id"],
                                                 content["workload_id"], content)
            return self.client.close_workflow_task(content["request_id"], content)
        except Exception as exc:  # idds-client raises its own exception class per failure
            if message["msg_type"] == "create_workflow_task":
                stored = self._stored(content["workflow"]["name"])
                if stored is not None:
                    log.info("iDDS answered %s to create_workflow_task but stored request %s",
                             str(exc)[:200], stored)
                    return {"run_id": message["run_id"], "request_id": stored}
            raise IddsError(f"iDDS at {self.client.host} did not take {message['msg_type']} "
                            f"for run {message['run_id']}", why=str(exc)[:800],
                            fix="read the iDDS server's idds_rest.log") from exc

    def _stored(self, name: str) -> int | None:
        try:
            found = self.client.get_request_id_by_name(name=name) or {}
        except Exception:  # not stored after all: the original error stands
            return None
        return found.get(name) if isinstance(found, dict) else None
