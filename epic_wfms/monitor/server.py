"""Serving the monitor with uvicorn: in the foreground (``epic-wfms monitor``) or in a
background thread next to a running demo (``epic-wfms demo --monitor``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from epic_wfms.bus import MessageBus
from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.loopback import free_port
from epic_wfms.monitor.app import create_app
from epic_wfms.store.database import Database


def serve(config: Config) -> None:
    uvicorn.run(create_app(config), host=config.monitor.host, port=config.monitor.port,
                log_level="warning")


@contextmanager
def background_monitor(config: Config, db: Database | None = None, bus: MessageBus | None = None,
                       port: int | None = None) -> Iterator[str]:
    """Run the monitor in a thread for the duration of the block; yields its URL."""
    host = config.monitor.host
    port = port if port is not None else (config.monitor.port or free_port(host))
    if port == 0:
        port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(create_app(config, db, bus), host=host, port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="monitor-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise EpicWfmsError(f"the monitor did not start on {host}:{port}",
                                "the port may be in use", "pick another with --monitor-port")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
