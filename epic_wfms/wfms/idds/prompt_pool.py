"""The fast path's standing worker pool, requested the way iDDS's prompt service takes it.

iDDS's prompt service (``idds-prompt``) listens on ``/topic/panda.workflow`` for
``create_workflow_task`` (a PanDA task whose jobs are long-lived workers: worker count, cores,
memory per core, walltime, site), ``adjust_worker`` (rescale) and ``close_workflow_task``
(end of run). The same requests go over REST with idds-client's ``WorkflowTaskClient``.
This builds those messages for an ePIC run and sends them through STOMP or REST.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.errors import ConfigurationError
from epic_wfms.wfms.idds.errors import IddsError

PROMPT_DESTINATION = "/topic/panda.workflow"


@dataclass(frozen=True)
class WorkerPool:
    run_number: int
    site: str  # PanDA queue of the E1 farm
    workers: int
    cores: int = 1
    memory_per_core_mb: int = 2000
    walltime_s: int = 12 * 3600
    requester: str = "epic-wfms"
    campaign: str = "EIC"
    vo: str = "epic"
    working_group: str = "EIC"

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cores < 1 or self.memory_per_core_mb < 1:
            raise ConfigurationError(
                f"worker pool for run {self.run_number}: workers={self.workers}, "
                f"cores={self.cores}, memory={self.memory_per_core_mb}",
                why="a pool needs at least one worker with one core and some memory",
                fix="give positive worker count, cores and memory per core")

    def workflow(self) -> dict:
        """The ``workflow`` dict of a create_workflow_task request."""
        return {
            "scope": "epic", "name": f"swf.{self.run_number:06d}.{self.site}.prompt",
            "requester": self.requester, "username": self.requester, "transform_tag": "EIC",
            "cloud": "US", "campaign": self.campaign,
            "content": {
                "run_id": self.run_number, "core_count": self.cores,
                "target_worker_count": self.workers,
                "memory_per_core": self.memory_per_core_mb, "site": self.site,
                "streaming_mode": "activemq",
                # what iDDS's prompt service puts into the PanDA task it submits
                "panda_attributes": {"num_workers": self.workers, "walltime": self.walltime_s,
                                     "core_count": self.cores,
                                     "memory_per_core": self.memory_per_core_mb,
                                     "vo": self.vo, "queue": self.site,
                                     "working_group": self.working_group},
            },
        }

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
                            "site": self.site, "target_worker_count": workers}}

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


class RestPromptChannel:
    """The same requests over iDDS's REST API (idds-client ``WorkflowTaskClient``)."""

    def __init__(self, host: str, auth: dict | None = None) -> None:
        from idds.client.workflowtaskclient import WorkflowTaskClient

        self.client = WorkflowTaskClient(host=host, auth=auth)

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
            raise IddsError(f"iDDS at {self.client.host} did not take {message['msg_type']} "
                            f"for run {message['run_id']}", why=str(exc)[:800],
                            fix="read the iDDS server's idds_rest.log") from exc
