"""A real Rucio server for the session (see epic_wfms/ddm/rucio/localserver.py, docs/rucio.md).

Started once per test session (about 20 s on a warm ``.venv-rucio``; the virtualenv itself is
created on first use and reused). Each test gets its own Rucio scope, so DIDs never collide.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from epic_wfms.config import Config, RucioConfig
from epic_wfms.ddm.rse import LocalRSE
from epic_wfms.ddm.rucio.backend import RucioDDM
from loopback.rucio.server import LocalRucioServer, add_scope, provision

POSTGRES_URL = os.environ.get(
    "EPIC_WFMS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass
class RucioTestServer:
    server: LocalRucioServer
    rses: list[LocalRSE]

    def settings(self, scope: str, **fields: object) -> RucioConfig:
        return RucioConfig(host=self.server.url, username=self.server.username,
                           password=self.server.password, scope=scope, **fields)

    def new_scope(self) -> str:
        scope = f"t{secrets.token_hex(5)}"
        add_scope(RucioDDM(self.settings(scope), self.rses).client, scope)
        return scope


def server_rses(config: Config, root: Path) -> list[LocalRSE]:
    """The configured RSEs, rooted under the server's directory; the DAQ buffer is
    non-deterministic (its PFN is wherever the DAQ wrote the file)."""
    return [LocalRSE(r.name, r.site, r.type, root / r.name, deterministic=r.name != config.daq_rse)
            for r in config.rses]


@pytest.fixture(scope="session")
def rucio_server(tmp_path_factory) -> Iterator[RucioTestServer]:
    workdir = tmp_path_factory.mktemp("rucio-server")
    server = LocalRucioServer(workdir, postgres_url=POSTGRES_URL).start()
    try:
        rses = server_rses(Config(), workdir / "rses")
        provision(RucioDDM(RucioConfig(host=server.url, username=server.username,
                                       password=server.password), rses).client, rses)
        yield RucioTestServer(server, rses)
    finally:
        server.stop()


@pytest.fixture
def rucio_scope(rucio_server: RucioTestServer) -> str:
    return rucio_server.new_scope()
