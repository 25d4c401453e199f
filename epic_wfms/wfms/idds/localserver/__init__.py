"""A real iDDS server (the ``idds-server`` package) on loopback, for tests and the CLI."""

from epic_wfms.wfms.idds.localserver.server import LocalIddsServer
from epic_wfms.wfms.idds.localserver.venv import ensure_venv

__all__ = ["LocalIddsServer", "ensure_venv"]
