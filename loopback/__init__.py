"""The loopback harness: real Rucio, PanDA (with JEDI and Pilot 3), iDDS and Harvester
servers started on 127.0.0.1 for demos, tests and benchmarks.

This is not part of an ePIC installation (``epic_wfms``): it starts servers in their own
virtualenvs, PostgreSQL databases and process groups, and stops what it started. It runs
from a checkout (see ``loopback.common.REPO``). ``python -m loopback prepare`` builds the
servers' virtualenvs once.
"""
