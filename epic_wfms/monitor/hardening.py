"""What every response and request of the monitor goes through (docs/security.md):

- security headers: a Content-Security-Policy allowing only this origin's scripts (no inline
  script), framing refused, ``nosniff``, no referrer, HSTS over HTTPS, and ``no-store`` on
  API answers (they may carry user data);
- a request whose path or query holds a NUL byte is refused with 400 before any handler
  (PostgreSQL cannot store or compare text holding one);
- the API documentation (Swagger UI) served from the installed ``fastapi-offline`` package,
  not from a third-party CDN, started by our own script (no inline script).
"""

from __future__ import annotations

import importlib.resources
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from epic_wfms.monitor.api.errors import error_response

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
DOCS = "/api/v1/docs"
DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>epic-wfms monitor API</title>
<link rel="stylesheet" href="{DOCS}/assets/swagger-ui.css">
<link rel="icon" href="/static/favicon.svg"></head>
<body><div id="swagger-ui" data-openapi="/api/v1/openapi.json"></div>
<script src="{DOCS}/assets/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script></body></html>
"""


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware): streamed answers such as the event stream pass
    through unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _holds_nul(scope):
            response = error_response(400, "bad_parameter",
                                      "the request's path or query holds a NUL byte",
                                      "names and filters are text without U+0000",
                                      "remove the %00 from the URL")
            await response(scope, receive, self._with_headers(scope, send))
            return
        await self.app(scope, receive, self._with_headers(scope, send))

    @staticmethod
    def _with_headers(scope: Scope, send: Send) -> Send:
        https = scope.get("scheme") == "https"
        api = scope.get("path", "").startswith("/api/")

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = dict(HEADERS)
                if https:
                    extra["Strict-Transport-Security"] = "max-age=31536000"
                if api and b"cache-control" not in present:
                    extra["Cache-Control"] = "no-store"
                headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()
                            if k.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        return sending


def _holds_nul(scope: Scope) -> bool:
    path = scope.get("path", "")
    return "\x00" in path or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))


def install(app: FastAPI) -> None:
    """Headers and the NUL guard on every request; the API documentation without a CDN."""
    app.add_middleware(SecurityHeaders)
    assets = importlib.resources.files("fastapi_offline") / "static"
    app.mount(f"{DOCS}/assets", StaticFiles(directory=str(assets)), name="api-docs-assets")

    @app.get(DOCS, include_in_schema=False)
    async def api_docs(_: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)
