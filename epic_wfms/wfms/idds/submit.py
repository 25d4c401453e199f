"""Submit an iDDS workflow with idds-client (the entry for ``template submit --target idds``)."""

from __future__ import annotations

from idds.common.utils import json_dumps, json_loads
from idds.workflowv2.workflow import Workflow

from epic_wfms.wfms.idds.errors import IddsError

__all__ = ["IddsError", "deserialise", "serialise", "submit_workflow"]


def serialise(workflow: Workflow) -> str:
    """The workflow as idds-client sends it (iDDS's own JSON encoding of workflow objects)."""
    return json_dumps(workflow)


def deserialise(text: str) -> Workflow:
    return json_loads(text)


def submit_workflow(workflow: Workflow, host: str, auth: dict | None = None,
                    retries: int = 3) -> int:
    """Submit through idds-client's ``ClientManager.submit``; returns iDDS's request id.

    ``auth`` is idds-client's: ``{"auth_type": "oidc", "oidc_token": ..., "vo": "epic"}``.
    """
    from epic_wfms.wfms.idds.client import IddsConnection, IddsSettings

    return IddsConnection(IddsSettings.from_auth(host, auth, retries=retries)).submit(workflow)
