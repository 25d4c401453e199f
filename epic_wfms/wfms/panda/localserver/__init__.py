"""A real PanDA server (the ``panda-server`` package) on loopback, for tests, demo and bench."""

from epic_wfms.wfms.panda.localserver.server import LocalPandaServer, PandaIdentity

__all__ = ["LocalPandaServer", "PandaIdentity"]
