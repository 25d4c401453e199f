"""What the loopback servers share: the checkout they run from, their virtualenvs, ports,
processes and PostgreSQL databases. Errors name what failed and what to run again."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psycopg

from epic_wfms.errors import EpicWfmsError

# The harness runs from a checkout: the servers' virtualenvs (.venv-<server>) and the plugins
# that run inside the engines (plugins/) are found there.
REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "plugins"


class HarnessError(EpicWfmsError):
    """A loopback server or its environment could not be prepared or started."""


def run_checked(cmd: Sequence[str], what: str, error: type[EpicWfmsError] = HarnessError,
                **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; a non-zero exit raises ``error`` with the command's last output."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise error(f"{what} failed (exit {proc.returncode})",
                    (proc.stderr or proc.stdout)[-1500:],
                    "read the output above; rerun `bash .ci/services-up`")
    return proc


def server_venv(name: str, env_var: str) -> Path:
    """Where server ``name``'s virtualenv lives: ``$env_var`` or ``<checkout>/.venv-<name>``."""
    return Path(os.environ.get(env_var) or REPO / f".venv-{name}")


def ensure_venv(venv: Path, requirements: Path, what: str, *, first: Sequence[str] = (),
                error: type[EpicWfmsError] = HarnessError) -> Path:
    """A server's own virtualenv (its pins conflict with ours), built once and cached.

    ``first`` is installed with ``--no-deps`` before ``requirements`` (a package whose own
    metadata pins more than it needs). A stamp holds the digest of both: editing the
    requirements file rebuilds the venv."""
    digest = hashlib.sha256(requirements.read_bytes() + "\n".join(first).encode()
                            ).hexdigest()[:16]
    stamp = venv / ".epic-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    if not (venv / "bin" / "python").exists():
        run_checked(["python3.11", "-m", "venv", str(venv)], f"creating the {what} venv", error)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run_checked([*pip, "--upgrade", "pip"], f"upgrading pip in the {what} venv", error)
    if first:
        run_checked([*pip, "--no-deps", *first], f"installing {' '.join(first)}", error)
    run_checked([*pip, "-r", str(requirements)], f"installing the {what}'s requirements", error)
    stamp.write_text(digest)
    return venv


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
