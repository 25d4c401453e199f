"""The monitor application: REST API, pages, live events, exports, notifications, usage.

``create_app(config)`` reads the store of that configuration. Inside the demo it is handed the
demo's bus, so operator writes reach the in-process agents; standalone with a STOMP bus it
connects its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from epic_wfms.bus import MessageBus
from epic_wfms.config import Config
from epic_wfms.installation import build_transport, open_database
from epic_wfms.monitor import api, exports, live, pages
from epic_wfms.monitor.api import errors
from epic_wfms.monitor.auth import ANONYMOUS, Authenticator
from epic_wfms.monitor.notifications import Notifier
from epic_wfms.monitor.readstore import ReadStore
from epic_wfms.monitor.state import MonitorState
from epic_wfms.monitor.usage import UsageRecorder
from epic_wfms.monitor.writes import Operations
from epic_wfms.store.database import Database
from epic_wfms.store.ledger import StoreLedger

STATIC = Path(__file__).resolve().parent / "static"


def own_bus(config: Config, db: Database) -> MessageBus | None:
    """A STOMP bus reaches the agents; an in-process one of our own would reach nobody."""
    if config.bus.transport != "stomp":
        return None
    return MessageBus(build_transport(config, "epic-wfms-monitor"), StoreLedger(db))


def endpoint_template(request: Request, route: object) -> str:
    """``/api/v1/runs/{number}`` for ``/api/v1/runs/301``: usage counts per endpoint, not URL
    (an included router's route knows only its own part of the path)."""
    own = getattr(route, "path", "")
    try:
        rendered = own.format(**request.path_params)
    except (KeyError, IndexError, ValueError):
        return own or "?"
    path = request.url.path
    return path[: len(path) - len(rendered)] + own if path.endswith(rendered) else own


def build_state(config: Config, db: Database, bus: MessageBus | None) -> MonitorState:
    """What the REST API, the pages and the MCP server share: reads, auth, writes, usage."""
    return MonitorState(config=config, db=db, reads=ReadStore(config.db_url),
                        auth=Authenticator(config), ops=Operations(config, db, bus),
                        usage=UsageRecorder(db))


def create_app(config: Config, db: Database | None = None, bus: MessageBus | None = None
               ) -> FastAPI:
    owns_db, db = db is None, db or open_database(config)
    owns_bus, bus = bus is None, bus or own_bus(config, db)
    state = build_state(config, db, bus)
    notifier = Notifier(state.reads, config.monitor.notifications)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.usage.start()
        if config.monitor.notifications:
            notifier.start(config.monitor.notify_poll_s)
        try:
            yield
        finally:
            notifier.stop()
            state.usage.stop()
            state.reads.dispose()
            if owns_bus and bus is not None:
                bus.close()
            if owns_db:
                db.dispose()

    app = FastAPI(title="epic-wfms monitor", version="1.0.0", lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
                  description="ePIC streaming workflow monitor: runs, STFs, state machine, "
                              "jobs, sites, users. Errors are {error: {status, code, what, why, "
                              "fix}}. Writes need a bearer token with an authorized role.")
    app.state.monitor = state
    app.state.notifier = notifier
    errors.install(app)

    @app.middleware("http")
    async def count_usage(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        if route is not None and not request.url.path.startswith("/static"):
            who = getattr(request.state, "principal", ANONYMOUS)
            state.usage.record(who.username, request.method, endpoint_template(request, route),
                               response.status_code >= 400)
        return response

    app.include_router(api.api_router())
    app.include_router(live.router)
    app.include_router(exports.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
