"""A real iDDS server (the ``idds-server`` package) on loopback, for tests and the CLI."""

from loopback.idds.server import LocalIddsServer, ensure_venv

__all__ = ["LocalIddsServer", "ensure_venv"]
