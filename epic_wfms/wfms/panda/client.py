"""PanDA calls through panda-client (``pandaclient.Client``), with errors that say what to do.

panda-client reads its server URL and auth from the environment at import time and per call
(``PANDA_URL[_SSL]``, ``PANDA_AUTH=oidc``, ``PANDA_AUTH_VO``, ``PANDA_AUTH_ID_TOKEN``). A
``PandaConnection`` sets them around each call (under a lock), so one process can talk to
a PanDA server as different identities. Endpoints panda-client has no wrapper for (priority,
job cloning) go through its own request machinery, ``Client.http_request_decorator``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from epic_wfms.wfms.panda.errors import PandaError

_LOCK = threading.RLock()
_INSERT_CODES = {1: "duplicated in DEFT", 2: "duplicated in JEDI (same taskName by this user)",
                 3: "accepted for incremental execution", 4: "server error"}


@dataclass(frozen=True)
class PandaSettings:
    url: str  # e.g. https://pandaserver.example/server/panda
    token: str
    auth_vo: str = "epic.production"  # Origin header: VO, or VO.role
    verify_host: bool = True


_CLIENT_URLS = ("baseURL", "baseURLSSL", "baseURLCSRVSSL", "server_base_path",
                "server_base_path_ssl", "cache_base_path_ssl")


def _client_module(settings: PandaSettings) -> tuple[ModuleType, dict[str, str]]:
    """Import ``pandaclient.Client`` and point it at ``settings.url``; returns the module and
    its previous URLs (the caller restores them and the environment afterwards: nothing
    leaks to other users of panda-client in the process)."""
    os.environ.update(PANDA_URL=settings.url, PANDA_URL_SSL=settings.url,
                      PANDACACHE_URL=settings.url)
    os.environ["PANDA_BEHIND_REAL_LB"] = "1"  # no DNS round-robin resolution of our host
    from pandaclient import Client

    previous = {name: getattr(Client, name) for name in _CLIENT_URLS}
    parsed = urlparse(settings.url)
    api = f"{parsed.scheme}://{parsed.netloc}/api/v1"
    Client.baseURL = Client.baseURLSSL = Client.baseURLCSRVSSL = settings.url
    Client.server_base_path = Client.server_base_path_ssl = Client.cache_base_path_ssl = api
    return Client, previous


class PandaConnection:
    """One PanDA server as one identity; every method raises ``PandaError`` on failure."""

    def __init__(self, settings: PandaSettings) -> None:
        self.settings = settings

    def call(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            saved = {k: os.environ.get(k) for k in _ENV_KEYS}
            client, urls = _client_module(self.settings)
            os.environ.update(PANDA_AUTH="oidc", PANDA_AUTH_VO=self.settings.auth_vo,
                              PANDA_AUTH_ID_TOKEN=self.settings.token)
            if not self.settings.verify_host:
                os.environ["PANDA_VERIFY_HOST"] = "off"
            try:
                fn = getattr(client, fn_name) if isinstance(fn_name, str) else fn_name(client)
                status, output = fn(*args, **kwargs)
            finally:
                for name, value in urls.items():
                    setattr(client, name, value)
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        if status != 0:
            raise PandaError(f"PanDA {what} failed: no valid answer from {self.settings.url}",
                             why=f"panda-client status {status}: {str(output)[:500]}",
                             fix="check that the server is up and the token is valid for VO "
                                 f"{self.settings.auth_vo}")
        return output

    # ---- tasks -----------------------------------------------------------------------
    def submit_task(self, task_params: dict) -> int:
        code, message = self.call("task submission", "insertTaskParams", task_params,
                                   properErrorCode=True)
        if code not in (0, 3):
            raise PandaError(f"PanDA refused task {task_params.get('taskName')!r}",
                             why=f"code {code} ({_INSERT_CODES.get(code, 'unknown')}): {message}",
                             fix="fix the task parameters (or use a new taskName) and resubmit")
        try:
            return int(str(message).rsplit("jediTaskID=", 1)[1].split()[0])
        except (IndexError, ValueError) as exc:
            raise PandaError("PanDA accepted a task but returned no jediTaskID",
                             why=str(message)) from exc

    def task_status(self, task_id: int) -> str:
        return self.call("task status", "getTaskStatus", task_id)

    def task_details(self, task_id: int) -> dict:
        return self.call("task details", "getJediTaskDetails", {"jediTaskID": task_id},
                          True, True)

    def task_params(self, task_id: int) -> dict:
        params = self.call("task parameters", "getTaskParamsMap", task_id)
        if not params:
            raise PandaError(f"PanDA has no parameters for task {task_id}",
                             fix="check the task id")
        return params if isinstance(params, dict) else json.loads(params)

    def job_ids(self, task_id: int) -> list[int]:
        return list(self.call("job ids of a task", "getPandaIDsWithTaskID", task_id) or [])

    def jobs(self, panda_ids: list[int]) -> list:
        """panda-client ``JobSpec`` objects (active and archived jobs); None for unknown ids."""
        if not panda_ids:
            return []
        return list(self.call("job descriptions", "getFullJobStatus", panda_ids))

    def files_in_datasets(self, task_id: int, types: str = "input,pseudo_input") -> list[dict]:
        return self.call("datasets and files", "get_files_in_datasets", task_id, types) or []

    # ---- operations ------------------------------------------------------------------
    def _command(self, what: str, fn_name: str, task_id: int, *args: Any) -> str:
        output = self.call(what, fn_name, task_id, *args)
        ok, message = output if isinstance(output, tuple) else (output, "")
        if ok is False or (isinstance(ok, int) and not isinstance(ok, bool) and ok != 0):
            raise PandaError(f"PanDA refused to {what} task {task_id}", why=str(message),
                             fix="check the task's status and your production role")
        return str(message)

    def kill_task(self, task_id: int) -> str:
        return self._command("kill", "killTask", task_id)

    def finish_task(self, task_id: int, soft: bool = True) -> str:
        return self._command("finish", "finishTask", task_id, soft)

    def retry_task(self, task_id: int, new_params: dict | None = None) -> str:
        """Retry the failed/cancelled parts (JEDI retries only unsuccessful files)."""
        data, message = self.call("task retry", "retryTask", task_id, False, True, new_params)
        if data not in (0, 3):  # 3: accepted with new parameters
            raise PandaError(f"PanDA refused to retry task {task_id}", why=f"{data}: {message}",
                             fix="only finished/failed/aborted-by-user tasks can be retried")
        return str(message)

    def increase_attempts(self, task_id: int, increase: int = 3) -> None:
        code = self.call("attempt increase", "increase_attempt_nr", task_id, increase)
        if code not in (0, None):
            raise PandaError(f"PanDA refused to increase attempts of task {task_id}",
                             why=f"code {code}")

    def change_priority(self, task_id: int, priority: int) -> str:
        return self.api("change priority of", "task/change_priority",
                         {"task_id": task_id, "priority": priority})

    def enable_job_cloning(self, task_id: int, mode: str = "runonce",
                           multiplicity: int | None = None, num_sites: int | None = None) -> str:
        """PanDA's job cloning (R7.5): ``runonce`` or ``storeonce`` clones of each job."""
        payload = {"jedi_task_id": task_id, "mode": mode}
        if multiplicity is not None:
            payload["multiplicity"] = multiplicity
        if num_sites is not None:
            payload["num_sites"] = num_sites
        return self.api("enable job cloning for", "task/enable_job_cloning", payload)

    def disable_job_cloning(self, task_id: int) -> str:
        return self.api("disable job cloning for", "task/disable_job_cloning",
                         {"jedi_task_id": task_id})

    def api(self, what: str, endpoint: str, payload: dict, data: bool = False) -> Any:
        """POST ``payload`` to ``/api/v1/<endpoint>`` with panda-client's request machinery;
        the server's message (or its ``data`` if asked) is returned, a refusal raised."""

        def build(client: ModuleType):
            return client.http_request_decorator(endpoint=endpoint, method="post", json_out=True,
                                                 output_mode="full")(lambda: payload)

        output = self.call(what, build)
        if not output.get("success"):
            task = payload.get("task_id") or payload.get("jedi_task_id")
            raise PandaError(f"PanDA refused to {what}" + (f" task {task}" if task else " PanDA"),
                             why=str(output.get("message")),
                             fix="production actions need the production role (token group "
                                 "epic/production)")
        return output.get("data") if data else str(output.get("message", ""))


_ENV_KEYS = ("PANDA_AUTH", "PANDA_AUTH_VO", "PANDA_AUTH_ID_TOKEN", "PANDA_VERIFY_HOST",
             "PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL", "PANDA_BEHIND_REAL_LB")
