"""Outage soak: the drills of issue 19 in a loop, with counts.

    .venv/bin/python bench/outage_soak.py --loops 5
    .venv/bin/python bench/outage_soak.py --loops 5 --drills ingest_down_across_end_run \
        --stfs 400 --rate 15 --ingest-down-s 50

Each iteration plays one drill (``loopback/drills.py``) on the services arrangement: agents
as processes over the shared RabbitMQ (STOMP, a throw-away namespace) and a private
PostgreSQL (``loopback/postgres.py``, initdb'd once per soak on its own port) that the
drills stop and restart. A drill holds when its run finished, every STF the DAQ produced is
in the merged file exactly once (lost 0) and no integrity issue of the run is open.
Printed: one line per iteration (verdict, seconds), then per drill held/failed counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from loopback import drills
from loopback.postgres import LocalPostgres


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=3, help="iterations of each drill")
    parser.add_argument("--drills", nargs="+", choices=sorted(drills.DRILLS),
                        default=sorted(drills.DRILLS))
    parser.add_argument("--stfs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="STF/s of the DAQ")
    parser.add_argument("--ingest-down-s", type=float, default=None,
                        help="ingest_down_across_end_run: seconds down after end_run "
                             "(default 3 x the drills' grace)")
    args = parser.parse_args()
    counts = {name: {"held": 0, "failed": 0, "seconds": []} for name in args.drills}
    with LocalPostgres.temporary() as postgres:
        for loop in range(args.loops):
            for name in args.drills:
                started = time.monotonic()
                with tempfile.TemporaryDirectory(prefix="epic-soak-") as workdir:
                    try:
                        with drills.drill_rig(Path(workdir), postgres, args.stfs,
                                              args.rate, drills.SCALE.get(name)) as rig:
                            extra = ({"down_s": args.ingest_down_s}
                                     if name == "ingest_down_across_end_run"
                                     and args.ingest_down_s else {})
                            verdict = drills.DRILLS[name](rig, **extra)
                            held = drills.ok(verdict)
                            if not held:
                                verdict["diagnosis"] = rig.diagnose()[:2000]
                    except Exception as error:  # counted, and the soak goes on
                        verdict, held = {"error": f"{type(error).__name__}: {error}"[:2000]}, False
                seconds = round(time.monotonic() - started, 1)
                counts[name]["held" if held else "failed"] += 1
                counts[name]["seconds"].append(seconds)
                print(json.dumps({"loop": loop + 1, "drill": name, "held": held,
                                  "seconds": seconds, **verdict}, default=str), flush=True)
    print(json.dumps({"stfs": args.stfs, "rate": args.rate, "loops": args.loops,
                      "counts": counts}))
    return 0 if all(c["failed"] == 0 for c in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
