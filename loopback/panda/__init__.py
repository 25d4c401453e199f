"""A real PanDA server (the ``panda-server`` package) on loopback, for tests, demo and bench."""

from loopback.panda.server import LocalPandaServer, PandaIdentity

__all__ = ["LocalPandaServer", "PandaIdentity"]
