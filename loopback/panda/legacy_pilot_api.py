"""Pilot 3.7's dispatcher calls mapped onto panda-server 1.0.4's pilot API (in the server's venv).

Why this exists: the newest pilot on PyPI (``panda-pilot`` 3.7.0.36) fetches and reports jobs
with the legacy dispatcher calls ``/server/panda/getJob``, ``/server/panda/updateJob`` and,
started by Harvester, ``/server/panda/updateWorkerPilotStatus`` (form-encoded, camelCase
fields, a flat ``{"StatusCode": ...}`` answer). panda-server 1.0.4 has dropped them
(``method getJob is forbidden``) for ``/api/v1/pilot/acquire_jobs``, ``update_job`` and
``update_worker_status`` (JSON, snake_case, ``{"success", "message", "data"}``). Pilot
releases that speak the new API exist only on GitHub. A deployment runs a pilot matching its
server; here the two published releases meet through this translation, which changes names
and envelopes only: authentication, job selection, state changes and bookkeeping are the
server's own v1 code, called through its own WSGI application.
"""

from __future__ import annotations

import inspect
import io
import json
import types
import typing
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

LEGACY = {"getJob": "acquire_jobs", "updateJob": "update_job",
          # a pilot started by Harvester reports its worker started/finished (``workerID``,
          # ``harvesterID``, ``status``): PanDA records it on the Harvester worker
          "updateWorkerPilotStatus": "update_worker_status"}
# legacy field -> v1 parameter, where the snake_case spelling is not the rule
RENAMED = {"jobId": "job_id", "state": "job_status", "xml": "job_output_report",
           "mem": "memory", "diskSpace": "disk_space", "prodUserID": "prod_user_id",
           "taskID": "task_id", "cpuConversionFactor": "cpu_conversion_factor",
           "coreCount": "core_count", "getProxyKey": "get_proxy_key"}
SC_NO_JOBS, SC_FAILED = 20, 30  # pandaserver.jobdispatcher.Protocol


def snake(name: str) -> str:
    """``cpuConsumptionTime`` -> ``cpu_consumption_time``, ``maxRSS`` -> ``max_rss``."""
    if name in RENAMED:
        return RENAMED[name]
    out, prev_upper = [], True
    for i, ch in enumerate(name):
        nxt_lower = i + 1 < len(name) and name[i + 1].islower()
        if ch.isupper() and (not prev_upper or nxt_lower) and i:
            out.append("_")
        out.append(ch.lower())
        prev_upper = ch.isupper()
    return "".join(out)


def _cast(value: str, annotation: object) -> object:
    kinds = typing.get_args(annotation) if isinstance(annotation, types.UnionType) \
        else (annotation,)
    for kind in kinds:
        try:
            if kind is bool:
                return value.lower() in ("true", "1")
            if kind is int:
                return int(float(value))
            if kind is float:
                return float(value)
        except ValueError:
            continue
    return value


def v1_arguments(fields: dict[str, str], v1_function: Callable) -> dict[str, object]:
    """The legacy form fields as the v1 function's typed keyword arguments (others dropped)."""
    params = inspect.signature(v1_function).parameters
    out = {}
    for key, value in fields.items():
        name = snake(key)
        if name in params and name != "req" and value not in ("", "None", "NULL"):
            out[name] = _cast(value, params[name].annotation)
    for name in ("start_time", "end_time"):  # the pilot sends epoch seconds, v1 wants UTC text
        if name in out and str(out[name]).replace(".", "", 1).isdigit():
            stamp = datetime.fromtimestamp(float(out[name]), UTC)
            out[name] = stamp.strftime("%Y-%m-%d %H:%M:%S")
    return out


def legacy_answer(method: str, v1_answer: dict) -> dict:
    """The flat answer the legacy call gave, from the v1 envelope."""
    data = v1_answer.get("data")
    if method == "getJob":
        jobs = (data or {}).get("jobs") if isinstance(data, dict) else None
        if v1_answer.get("success") and jobs:
            return jobs[0]
        code = SC_NO_JOBS if "No jobs" in str(v1_answer.get("message")) else SC_FAILED
        return {"StatusCode": code, "errorDialog": v1_answer.get("message", "")}
    if isinstance(data, dict) and "StatusCode" in data:
        return data
    return {"StatusCode": 0 if v1_answer.get("success") else SC_FAILED,
            "ErrorDiag": v1_answer.get("message", "")}


def translate(environ: dict, start_response: Callable, application: Callable,
              v1_module: object) -> Iterable[bytes] | None:
    """Serve a legacy pilot call through ``application``'s v1 pilot API; None if not one."""
    path = environ.get("SCRIPT_NAME", "")
    method = path.rsplit("/", 1)[-1]
    if not path.startswith("/server/panda/") or method not in LEGACY:
        return None
    size = int(environ.get("CONTENT_LENGTH") or 0)
    form = dict(parse_qsl(environ["wsgi.input"].read(size).decode(), keep_blank_values=True))
    body = json.dumps(v1_arguments(form, getattr(v1_module, LEGACY[method]))).encode()
    inner = dict(environ, SCRIPT_NAME=f"/api/v1/pilot/{LEGACY[method]}", PATH_INFO="",
                 REQUEST_METHOD="POST", CONTENT_TYPE="application/json",
                 CONTENT_LENGTH=str(len(body)), HTTP_ACCEPT="application/json")
    inner["wsgi.input"] = io.BytesIO(body)
    inner.pop("HTTP_CONTENT_ENCODING", None)
    status: list[str] = []
    chunks = application(inner, lambda s, h, *a: status.append(s))
    raw = b"".join(chunks)
    try:
        answer = legacy_answer(method, json.loads(raw))
    except ValueError:
        answer = {"StatusCode": SC_FAILED, "ErrorDiag": raw.decode(errors="replace")[:500]}
    out = json.dumps(answer).encode()
    start_response(status[0] if status else "200 OK",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
