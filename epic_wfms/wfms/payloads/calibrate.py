"""Calibration stand-in: one iteration of a constant over an STF, its result reported to PanDA.

Run as ``python -m epic_wfms.wfms.payloads.calibrate --input STF --output OUT.json
[--previous CONSTANT]``. The data prefer a constant in [1, 2) (from the STF's content); an
iteration moves the previous constant (0 for the first) 60 % of the way there, so the
``residual`` (how far the constant moved) shrinks by 0.4 per iteration: 0.6-1.2, then
0.24-0.48, 0.096-0.19, ...

The result goes to the output file and to ``jobReport.json`` in the working directory, the
file Pilot 3 sends to PanDA as the job's metadata (``metaData``), which is how iDDS's poller
reads it back (``epic_wfms.wfms.idds.results``). Same exit codes as the reco payload.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT, write_result

JOB_REPORT = "jobReport.json"  # Pilot 3's config.Payload.jobreport
STEP = 0.6


def preferred_constant(data: bytes) -> float:
    return 1.0 + int(hashlib.sha256(data).hexdigest()[:4], 16) / 65536


def iterate(previous: float, data: bytes) -> dict:
    target = preferred_constant(data)
    new = previous + STEP * (target - previous)
    return {"constant": new, "previous": previous, "residual": abs(new - previous)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--previous", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        data = args.input.read_bytes()
    except OSError as error:
        print(f"cannot read {args.input}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = {"stf": args.input.name, **iterate(args.previous, data)}
    write_result(args.output, result)
    write_result(Path(JOB_REPORT), result)
    print(f"calibration: constant {result['constant']:.5f} moved {result['residual']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
