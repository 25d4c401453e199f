"""One authenticated ``rucio-clients`` Client per thread, and Rucio errors in our terms.

The streaming agents call DDM from several consumer threads; a Rucio client holds a
``requests`` session and its token, so each thread gets its own (the token is cached on disk).
"""

from __future__ import annotations

import threading
from typing import Any

from rucio.client import Client
from rucio.common import exception as rucio_errors

from epic_wfms.config import RucioConfig
from epic_wfms.errors import DataManagementError


class RucioClients:
    def __init__(self, settings: RucioConfig) -> None:
        self.settings = settings
        self._local = threading.local()

    def get(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
        return client

    def _connect(self) -> Client:
        s = self.settings
        creds: dict[str, Any] | None = None
        if s.auth_type == "userpass":
            creds = {"username": s.username, "password": s.password}
        try:
            return Client(
                rucio_host=s.host, auth_host=s.auth_host or s.host, account=s.account,
                auth_type=s.auth_type, creds=creds, ca_cert=s.ca_cert, vo=s.vo, timeout=120,
                user_agent="epic-wfms",
            )
        except rucio_errors.RucioException as error:
            raise DataManagementError(
                f"cannot connect to Rucio at {s.host} as {s.account}", _short(error),
                "check ddm.rucio host, account and credentials in the configuration",
            ) from error
        except OSError as error:
            raise DataManagementError(
                f"cannot reach the Rucio server at {s.host}", str(error),
                "start the server or fix ddm.rucio.host",
            ) from error


def _short(error: Exception) -> str:
    """Rucio messages repeat a long preamble; keep the part that says what is wrong."""
    text = " ".join(str(error).split())
    return text.split("Details: ", 1)[-1][:500]


def translate(error: Exception, what: str, fix: str) -> DataManagementError:
    return DataManagementError(what, f"Rucio: {_short(error)}", fix)
