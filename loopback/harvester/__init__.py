"""A real Harvester (``pandaharvester`` 0.7.5) on loopback, provisioning Pilot 3 workers for
the loopback PanDA server's queues, for tests, benchmarks and the whole-stack runs."""

from loopback.harvester.install import ensure_venv
from loopback.harvester.server import LocalHarvester

__all__ = ["LocalHarvester", "ensure_venv"]
