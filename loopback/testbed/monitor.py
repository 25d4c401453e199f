"""A stand-in for the REST API of the testbed's monitor (swf-monitor, a Django service).

The testbed's agents ask their monitor for identities (agent id, run number, workflow
execution number) and report heartbeats, logs, workflow definitions and executions to it.
The messages under test do not go through it; it only has to answer as swf-monitor does:
``{"status": "success", "run_number": N}`` and so on (swf-monitor's ``monitor_app/views.py``:
run numbers count from 100010, agent ids and execution numbers from 1). Every request is
kept in ``requests`` for inspection.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIRST_RUN_NUMBER = 100010  # as swf-monitor's PersistentState


class TestbedMonitor:
    __test__ = False  # not a pytest test class

    def __init__(self, first_run_number: int = FIRST_RUN_NUMBER) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self._runs = itertools.count(first_run_number)
        self._agents = itertools.count(1)
        self._executions = itertools.count(1)
        self._definitions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="testbed-monitor", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> TestbedMonitor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path, body))
            route = path.split("?", 1)[0].removeprefix("/api").rstrip("/")
            if route == "/state/next-run-number":
                return 200, {"status": "success", "run_number": next(self._runs)}
            if route == "/state/next-agent-id":
                return 200, {"status": "success", "agent_id": next(self._agents)}
            if route == "/state/next-workflow-execution-id":
                return 200, {"status": "success", "sequence": next(self._executions)}
            if route == "/namespaces/ensure":
                return 200, {"status": "success", "created": False, **(body or {})}
            if route == "/workflow-definitions":
                if method == "GET":
                    return 200, list(self._definitions)
                definition = {"id": len(self._definitions) + 1, **(body or {})}
                self._definitions.append(definition)
                return 201, definition
            if method == "GET":
                return 200, []
            return (201 if method == "POST" else 200), {"status": "success", **(body or {})}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, payload = monitor.answer(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _serve

            def log_message(self, *_args: object) -> None:  # quiet
                pass

        return Handler
