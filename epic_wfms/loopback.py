"""What the loopback servers the tests and demos start (Rucio, PanDA, iDDS, the monitor) share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess

import psycopg


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# logging sections for an alembic.ini: the servers' schema tools log warnings to stderr only
ALEMBIC_LOGGING = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
"""


def stop_process_group(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group a server was started in (``start_new_session``): gunicorn
    and its workers, or a daemon and its children; SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent


def postgres_admin(host: str, port: int, user: str) -> psycopg.Connection:
    """An autocommit connection to the ``postgres`` database, for CREATE/DROP DATABASE."""
    return psycopg.connect(host=host, port=port, user=user, dbname="postgres",
                           autocommit=True)


def recreate_database(admin: psycopg.Connection, name: str, owner: str | None = None) -> None:
    """A server's own, empty database (a leftover of an interrupted run is dropped first)."""
    drop_database(admin, name)
    admin.execute(f'CREATE DATABASE "{name}"' + (f" OWNER {owner}" if owner else ""))


def drop_database(admin: psycopg.Connection, name: str) -> None:
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
