"""``epic-wfms demo --ddm rucio`` without a configured Rucio server (``ddm.rucio`` credentials:
then the demo uses that server and this is not called): a private real Rucio server on
loopback for the demo's duration (PostgreSQL database, gunicorn, hermes; see server.py), with
the POSIX RSEs and the ePIC scope, stopped and dropped afterwards. Transfers are done by the
site-local agent (no FTS here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from epic_wfms.config import Config
from epic_wfms.ddm.rse import LocalRSE
from loopback.stack import RucioEndpoint


@contextmanager
def rucio_ddm(config: Config, announce=print) -> Iterator[Config]:
    """``config`` switched to Rucio; a private server is started if none is configured."""
    with private_rucio(config, announce) as (rucio_config, _endpoint):
        yield rucio_config


@contextmanager
def private_rucio(config: Config, announce=print) -> Iterator[tuple[Config, RucioEndpoint]]:
    """A private Rucio server with the configuration's RSEs and the ePIC scope: ``config``
    switched to it, and the server as the PanDA stack takes it (``loopback.stack``)."""
    settings = config.ddm.rucio
    from epic_wfms.ddm.rucio.backend import RucioDDM
    from loopback.rucio.server import LocalRucioServer, add_scope, provision

    root = (config.data_dir / "rucio").resolve()
    venv = settings.server_venv.resolve()
    announce(f"starting a Rucio server (virtualenv {venv}; created on first use)")
    server = LocalRucioServer(root / "server", venv).start()
    try:
        settings = settings.model_copy(update={
            "host": server.url, "username": server.username, "password": server.password,
            "transfers": "local_copy"})
        rses = [LocalRSE(r.name, r.site, r.type, root / "rses" / r.name,
                         deterministic=r.name != config.daq_rse) for r in config.rses]
        client = RucioDDM(settings, rses).client
        provision(client, rses)
        add_scope(client, settings.scope)
        announce(f"Rucio {server.url} ready: scope {settings.scope}, RSEs "
                 f"{', '.join(r.name for r in rses)}")
        yield _with(config, settings), RucioEndpoint(
            server.config_file, server.url, server.username, server.password, tuple(rses))
    finally:
        server.stop()


def _with(config: Config, settings) -> Config:
    return config.model_copy(update={"ddm": config.ddm.model_copy(update={
        "backend": "rucio", "rucio": settings})})
