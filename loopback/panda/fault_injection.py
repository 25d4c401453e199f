"""The reco payload with per-attempt fault injection, for tests of the running stack.

``python -m loopback.panda.fault_injection <markers dir> --input=<STF> --output=<out>``
runs ``epic_wfms.wfms.payloads.reco`` unless a marker names the input STF:

- ``<markers>/<STF>.fail``: this attempt fails like the payload's ``--inject-failure``
  (exit 65); the marker is removed, so JEDI's retry of the file succeeds;
- ``<markers>/<STF>.hang``: this attempt hangs (until killed); the marker is replaced by
  ``<STF>.hanging`` holding the Harvester worker ID and PID, so a test can kill the pilot
  that runs it mid-job.

Markers are consumed atomically (rename), so exactly one attempt sees each.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from epic_wfms.wfms.payloads import reco
from epic_wfms.wfms.payloads.results import EXIT_INJECTED


def _consume(marker: Path, into: Path | None = None) -> bool:
    try:
        if into is None:
            marker.unlink()
        else:
            marker.rename(into)
        return True
    except FileNotFoundError:
        return False


def main(argv: list[str]) -> int:
    markers, args = Path(argv[0]), argv[1:]
    stf = next((Path(a.split("=", 1)[1]).name for a in args if a.startswith("--input=")), "")
    if stf and _consume(markers / f"{stf}.fail"):
        print(f"injected failure of this attempt on {stf}", file=sys.stderr)
        return EXIT_INJECTED
    hanging = markers / f"{stf}.hanging"
    if stf and _consume(markers / f"{stf}.hang", hanging):
        hanging.write_text(f"{os.environ.get('HARVESTER_WORKER_ID', '')} {os.getpid()}\n")
        while True:
            time.sleep(60)
    return reco.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
