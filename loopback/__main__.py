"""``python -m loopback prepare [SERVER ...]``: build the loopback servers' virtualenvs
(Rucio, PanDA, Pilot 3, iDDS, Harvester), each once and then cached."""

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


PREPARE: dict[str, Callable[[], Path]] = {
    "rucio": _rucio, "panda": _panda, "pilot": _pilot, "idds": _idds, "harvester": _harvester}


def main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"] or not set(argv[1:]) <= set(PREPARE):
        print(f"usage: python -m loopback prepare [{'|'.join(PREPARE)} ...]", file=sys.stderr)
        return 2
    for name in argv[1:] or PREPARE:
        print(f"{name}: ready in {PREPARE[name]()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
