"""Submit an iDDS workflow with idds-client (the entry for ``template submit --target idds``)."""

from __future__ import annotations

from idds.common.utils import json_dumps, json_loads
from idds.workflowv2.workflow import Workflow

from epic_wfms.errors import EpicWfmsError


class IddsError(EpicWfmsError):
    """An iDDS request that could not be made or was refused."""


def serialise(workflow: Workflow) -> str:
    """The workflow as idds-client sends it (iDDS's own JSON encoding of workflow objects)."""
    return json_dumps(workflow)


def deserialise(text: str) -> Workflow:
    return json_loads(text)


def submit_workflow(workflow: Workflow, host: str, auth: dict | None = None,
                    username: str | None = None) -> int:
    """Submit through idds-client's ``ClientManager.submit``; returns iDDS's request id."""
    from idds.client.clientmanager import ClientManager

    try:
        request_id = ClientManager(host=host, auth=auth).submit(workflow, username=username)
    except Exception as exc:  # idds-client raises its own exception types per failure
        raise IddsError(f"iDDS at {host} did not take workflow {workflow.name!r}",
                        why=str(exc)[:500], fix="check the iDDS host, its auth and the workflow"
                        ) from exc
    if not isinstance(request_id, int):
        raise IddsError(f"iDDS refused workflow {workflow.name!r}", why=str(request_id)[:500])
    return request_id
