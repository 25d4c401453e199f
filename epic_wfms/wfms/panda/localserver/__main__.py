"""``python -m epic_wfms.wfms.panda.localserver prepare``: build the PanDA venv and unpack
Pilot 3's source tree (both cached)."""

from __future__ import annotations

import sys

from epic_wfms.wfms.panda.localserver.pilot import ensure_pilot
from epic_wfms.wfms.panda.localserver.server import ensure_venv


def main(argv: list[str]) -> int:
    if argv[:1] != ["prepare"]:
        print("usage: python -m epic_wfms.wfms.panda.localserver prepare", file=sys.stderr)
        return 2
    print(f"PanDA server venv ready: {ensure_venv()}")
    print(f"PanDA Pilot 3 ready: {ensure_pilot()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
