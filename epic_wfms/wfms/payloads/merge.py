"""Merge/gather payload: aggregate reco outputs (or partial merges) into one result (R3.7).

Every STF must appear exactly once: a duplicate fails the merge instead of double counting.
Run as ``python -m epic_wfms.wfms.payloads.merge --output OUT.json IN1.json IN2.json ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT, write_result


def _stfs_of(result: dict) -> list[str]:
    return list(result["stfs"]) if "stfs" in result else [result["stf"]]


def merge(inputs: list[Path]) -> dict:
    stfs: list[str] = []
    per_detector: dict[str, int] = {}
    totals = {"n_tf": 0, "n_hits": 0, "adc_sum": 0}
    for path in inputs:
        result = json.loads(path.read_text())
        for stf in _stfs_of(result):
            if stf in stfs:
                raise ValueError(f"STF {stf} appears twice (again in {path.name})")
            stfs.append(stf)
        for key in totals:
            totals[key] += int(result[key])
        for name, count in result["hits_per_detector"].items():
            per_detector[name] = per_detector.get(name, 0) + int(count)
    return {
        "stfs": sorted(stfs),
        "n_stfs": len(stfs),
        **totals,
        "adc_mean": totals["adc_sum"] / max(totals["n_hits"], 1),
        "hits_per_detector": per_detector,
        "inputs": [p.name for p in inputs],
        "produced_at": datetime.now(UTC).isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("inputs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        result = merge(args.inputs)
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot merge: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
