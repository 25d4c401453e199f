"""Talk to an iDDS server through idds-client: submit, read back, abort, close, retry.

Every call is idds-client's own (``ClientManager.submit`` builds the request exactly as
``idds`` users' tools do; reads and commands go through its REST ``Client``). Authentication
is OIDC: an ID token and the VO, sent as iDDS's ``X-IDDS-Auth-*`` headers. idds-client gives
``IDDS_*`` environment variables (``IDDS_HOST``, ``IDDS_OIDC_TOKEN``...) precedence over what
is passed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from epic_wfms.wfms.idds.errors import IddsError


@dataclass(frozen=True)
class IddsSettings:
    """Where iDDS is and who we are: ``host`` like ``https://idds.example.org:443/idds``."""

    host: str
    token: str | None = None
    vo: str = "epic"
    timeout_s: float = 60.0
    retries: int = 3  # idds-client waits up to 30 s between retries on a refused connection

    @classmethod
    def from_auth(cls, host: str, auth: dict | None, retries: int = 3) -> IddsSettings:
        """From idds-client's ``auth`` dict (``{"auth_type": "oidc", "oidc_token", "vo"}``)."""
        auth = auth or {}
        if auth.get("auth_type", "oidc") != "oidc":
            raise IddsError(f"iDDS auth type {auth['auth_type']!r} is not supported here",
                            why="epic-wfms authenticates to iDDS with OIDC tokens only",
                            fix="pass {'auth_type': 'oidc', 'oidc_token': ..., 'vo': 'epic'}")
        return cls(host=host, token=auth.get("oidc_token"), vo=auth.get("vo", "epic"),
                   retries=retries)


@dataclass(frozen=True)
class IddsTransform:
    """One work of a request as iDDS runs it: its transform and current processing."""

    transform_id: int
    name: str
    status: str
    processing_id: int | None
    processing_status: str | None
    workload_id: int | None


@dataclass(frozen=True)
class IddsFile:
    """One file iDDS tracks for a work: an input it consumes or the output it produced
    (``status``: iDDS's ``ContentStatus`` name; ``metadata``: for outputs, the PanDA job that
    made it, its output files and the report its payload wrote)."""

    transform_id: int
    relation: str  # Input / Output / Log
    scope: str
    name: str
    status: str
    metadata: dict


@dataclass(frozen=True)
class IddsRequest:
    """A request read back from iDDS (``status`` is iDDS's ``RequestStatus`` name)."""

    request_id: int
    name: str
    status: str
    username: str | None
    workflow: Any  # the idds.workflowv2 Workflow, rebuilt from what iDDS stored
    errors: Any = None


def _name(value: Any) -> str | None:
    return None if value is None else getattr(value, "name", str(value))


class IddsConnection:
    """An authenticated idds-client session to one iDDS server."""

    def __init__(self, settings: IddsSettings) -> None:
        from idds.client.clientmanager import ClientManager

        self.settings = settings
        if not settings.token:
            raise IddsError(f"no iDDS token for {settings.host}",
                            why="iDDS refuses requests without authentication",
                            fix="give an OIDC ID token of the VO (settings.token)")
        manager = ClientManager(host=settings.host, timeout=settings.timeout_s)
        manager.auth_type, manager.oidc_token, manager.vo = "oidc", settings.token, settings.vo
        try:
            manager.setup_client()
        except Exception as exc:
            raise IddsError(f"cannot set up idds-client for {settings.host}", why=str(exc)[:500],
                            fix="check the token and VO") from exc
        manager.client.retries = max(1, settings.retries)
        self._manager = manager
        self.client = manager.client  # idds.client.client.Client (REST)

    # ---- helpers -----------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # idds-client raises its own exception class per failure
            raise IddsError(f"iDDS at {self.settings.host}: {what} failed", why=_why(exc),
                            fix=_fix(exc)) from exc

    @staticmethod
    def _command_result(what: str, result: Any) -> str:
        """Commands answer ``[[status, {"status", "message"}]]``; status -1 is a refusal."""
        status, detail = (result or [[-1, {"message": "no answer"}]])[0]
        message = detail.get("message", "") if isinstance(detail, dict) else str(detail)
        if status != 0:
            raise IddsError(f"iDDS refused to {what}", why=message,
                            fix="check the request id and that you own the request")
        return message

    # ---- calls -------------------------------------------------------------------------
    def ping(self) -> dict:
        return self._call("ping", self.client.ping)

    def submit(self, workflow: Any) -> int:
        """Submit an ``idds.workflowv2`` Workflow; returns iDDS's request id. The request's
        owner is the token's identity (iDDS fills the username from it)."""
        result = self._call(f"submitting workflow {workflow.name!r}", self._manager.submit,
                            workflow)
        if isinstance(result, tuple) and result and result[0] is False:  # exception_handler
            raise IddsError(f"iDDS at {self.settings.host} did not take workflow "
                            f"{workflow.name!r}", why=str(result[1])[:800],
                            fix=_fix(str(result[1])))
        if not isinstance(result, int):
            raise IddsError(f"iDDS refused workflow {workflow.name!r}", why=str(result)[:800])
        return result

    def submit_hpo(self, hpo: dict) -> int:
        """Submit an HPO request (``workflows.hyperparameter_optimisation``) as iDDS's
        HyperParameterOpt request; iDDS turns it into a workflow of one HPO work."""
        from idds.common.constants import RequestStatus, RequestType

        metadata = {key: hpo[key] for key in ("method", "opt_space", "max_points")}
        metadata["num_points_per_iteration"] = hpo["num_points_per_iteration"]
        metadata["workload_id"] = None
        return self._call(f"submitting HPO request {hpo['name']!r}", self.client.add_request,
                          scope="epic", name=hpo["name"], requester="epic-wfms",
                          request_type=RequestType.HyperParameterOpt, transform_tag="hpo",
                          status=RequestStatus.New, priority=0, lifetime=30,
                          request_metadata=metadata)

    def request(self, request_id: int, with_workflow: bool = True) -> IddsRequest:
        """Read a request back. ``with_workflow`` rebuilds the stored workflow, which needs
        its work classes importable here (an HPO request's ATLASHPOWork is idds-atlas's)."""
        rows = self._call(f"reading request {request_id}", self.client.get_requests,
                          request_id=request_id, with_metadata=with_workflow)
        if not rows:
            raise IddsError(f"iDDS has no request {request_id}",
                            why=f"{self.settings.host} returned no request with that id",
                            fix="check the id (`epic-wfms idds status` lists what we submitted)")
        row = rows[0]
        return IddsRequest(request_id=row["request_id"], name=row["name"],
                           status=_name(row["status"]), username=row.get("username"),
                           workflow=(row.get("request_metadata") or {}).get("workflow"),
                           errors=row.get("errors"))

    def transforms(self, request_id: int) -> list[IddsTransform]:
        """The request's works as transforms, with their current processing (if any)."""
        rows = self._call(f"reading the transforms of request {request_id}",
                          self.client.get_requests, request_id=request_id,
                          with_processing=True)
        seen: dict[int, IddsTransform] = {}
        for row in rows or []:
            if row.get("transform_id") is None:
                continue
            seen[row["transform_id"]] = IddsTransform(
                transform_id=row["transform_id"], name=row.get("transform_name"),
                status=_name(row.get("transform_status")),
                processing_id=row.get("processing_id"),
                processing_status=_name(row.get("processing_status")),
                workload_id=row.get("processing_workload_id") or row.get("transform_workload_id"))
        if not seen:  # no processing yet: the transforms alone
            for row in self._call(f"reading the transforms of request {request_id}",
                                  self.client.get_transforms, request_id=request_id) or []:
                seen[row["transform_id"]] = IddsTransform(
                    transform_id=row["transform_id"], name=row.get("name"),
                    status=_name(row.get("status")), processing_id=None,
                    processing_status=None, workload_id=row.get("workload_id"))
        return sorted(seen.values(), key=lambda t: t.transform_id)

    def files(self, request_id: int, transform_id: int | None = None) -> list[IddsFile]:
        """The files iDDS keeps for the request's works (its contents: what each processing
        consumed and produced), through idds-client's catalog call."""
        rows = self._call(f"reading the files of request {request_id}",
                          self.client.get_contents, request_id=request_id,
                          transform_id=transform_id)
        return sorted((IddsFile(transform_id=r["transform_id"],
                                relation=_name(r.get("content_relation_type")) or "",
                                scope=r["scope"], name=r["name"], status=_name(r["status"]),
                                metadata=r.get("content_metadata") or {})
                       for r in rows or []),
                      key=lambda f: (f.transform_id, f.relation, f.name))

    def abort(self, request_id: int) -> str:
        """Abort (iDDS's Clerk cancels the request's transforms and processings)."""
        return self._command_result(f"abort request {request_id}", self._call(
            f"aborting request {request_id}", self.client.abort_request, request_id=request_id))

    def close(self, request_id: int) -> str:
        """Close: no new work is generated, what runs finishes (iDDS's CloseRequest)."""
        return self._command_result(f"close request {request_id}", self._call(
            f"closing request {request_id}", self.client.close_request, request_id=request_id))

    def retry(self, request_id: int) -> str:
        """Retry/resume a request (iDDS registers a ResumeRequest command)."""
        return self._command_result(f"retry request {request_id}", self._call(
            f"retrying request {request_id}", self.client.retry_request, request_id=request_id))


def _why(exc: Exception | str) -> str:
    text = str(exc)
    return text[:800] or type(exc).__name__


def _fix(exc: Exception | str) -> str:
    text = str(exc)
    if "ConnectionError" in text or "Connection refused" in text:
        return "check that iDDS runs at that host and port (and that `host` has no typo)"
    if "oidc" in text.lower() or "token" in text.lower() or "Unauthorized" in text:
        return "get a valid token of the VO's issuer; iDDS checks issuer, audience and signature"
    return "read the iDDS server's log (idds_rest.log) for the request"
