"""Serving the monitor with uvicorn: in the foreground (``epic-wfms monitor``) or in a
background thread next to a running demo (``epic-wfms demo --monitor``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from epic_wfms.bus import MessageBus
from epic_wfms.config import Config
from epic_wfms.errors import EpicWfmsError
from epic_wfms.monitor.app import create_app
from epic_wfms.store.database import Database


def tls_options(config: Config) -> dict[str, str]:
    """uvicorn's HTTPS settings when ``monitor.tls_certfile``/``tls_keyfile`` are set."""
    monitor = config.monitor
    if monitor.tls_certfile is None:
        return {}
    return {"ssl_certfile": str(monitor.tls_certfile), "ssl_keyfile": str(monitor.tls_keyfile)}


def url_of(config: Config, host: str, port: int) -> str:
    scheme = "https" if config.monitor.tls_certfile else "http"
    return f"{scheme}://{host}:{port}/"


def serve(config: Config) -> None:
    uvicorn.run(create_app(config), host=config.monitor.host, port=config.monitor.port,
                log_level="warning", server_header=False, **tls_options(config))


@contextmanager
def background_monitor(config: Config, db: Database | None = None, bus: MessageBus | None = None,
                       port: int | None = None) -> Iterator[str]:
    """Run the monitor in a thread for the duration of the block; yields its URL."""
    host = config.monitor.host
    port = port if port is not None else config.monitor.port
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:  # bound here, so port 0 (the kernel's choice) is known before the server runs
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise EpicWfmsError(f"the monitor cannot listen on {host}:{port}", str(error),
                            "pick another with --monitor-port (0: any free port)") from error
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config, db, bus), host=host, port=port,
                                           log_level="warning", lifespan="on",
                                           server_header=False, **tls_options(config)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                              name="monitor-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise EpicWfmsError(f"the monitor did not start on {host}:{port}",
                                "the port may be in use", "pick another with --monitor-port")
        time.sleep(0.05)
    try:
        yield url_of(config, host, port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
