"""``python -m loopback prepare [SERVER ...]``: build the loopback servers' virtualenvs
(Rucio, PanDA, Pilot 3, iDDS, Harvester) and the ePIC testbed's, each once and then cached."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def _rucio() -> Path:
    from loopback.rucio.server import ensure_server_venv
    return ensure_server_venv()


def _panda() -> Path:
    from loopback.panda.server import ensure_venv
    return ensure_venv()


def _pilot() -> Path:
    from loopback.panda.pilot import ensure_pilot
    return ensure_pilot()


def _idds() -> Path:
    from loopback.idds.server import ensure_venv
    return ensure_venv()


def _harvester() -> Path:
    from loopback.harvester import ensure_venv
    return ensure_venv()


def _testbed() -> Path:
    from loopback.testbed.venv import ensure_testbed
    return ensure_testbed().venv


PREPARE: dict[str, Callable[[], Path]] = {
    "rucio": _rucio, "panda": _panda, "pilot": _pilot, "idds": _idds, "harvester": _harvester,
    "testbed": _testbed}
OPTIONAL = {"testbed"}  # its sources may be unreachable offline: its tests skip then


def main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"] or not set(argv[1:]) <= set(PREPARE):
        print(f"usage: python -m loopback prepare [{'|'.join(PREPARE)} ...]", file=sys.stderr)
        return 2
    from loopback.testbed.source import SourceUnavailable

    for name in argv[1:] or PREPARE:
        try:
            print(f"{name}: ready in {PREPARE[name]()}", flush=True)
        except SourceUnavailable as error:
            if name not in OPTIONAL or argv[1:]:
                raise
            print(f"{name}: skipped: {error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
