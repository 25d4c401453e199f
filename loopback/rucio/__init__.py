"""A real Rucio server (the ``rucio`` package) on loopback, for tests, demo and bench."""

from loopback.rucio.server import LocalRucioServer, add_scope, ensure_server_venv, provision

__all__ = ["LocalRucioServer", "add_scope", "ensure_server_venv", "provision"]
