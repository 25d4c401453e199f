"""Reconstruction stand-in: decode an STF file and write derived quantities as JSON.

Run as ``python -m epic_wfms.wfms.payloads.reco --input STF --output OUT.json``. Exit codes
follow the pilot convention: 0 ok, 64 bad input file, 65 injected failure (tests, demos).
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import DETECTOR_CHANNELS, read_stf
from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT, EXIT_INJECTED, write_result


def reconstruct(stf_path: Path) -> dict:
    header, timeframes = read_stf(stf_path)
    hits = [hit for tf in timeframes for hit in tf.hits]
    per_detector = {name: 0 for name in DETECTOR_CHANNELS}
    adc_sum = adc_sq = 0
    for channel, adc, _time in hits:
        adc_sum += adc
        adc_sq += adc * adc
        for name, channels in DETECTOR_CHANNELS.items():
            if channel in channels:
                per_detector[name] += 1
                break
    n = max(len(hits), 1)
    mean = adc_sum / n
    return {
        "stf": stf_path.name,
        "run_number": header.get("run_number"),
        "sequence": header.get("sequence"),
        "input_adler32": file_adler32(stf_path),
        "n_tf": len(timeframes),
        "n_hits": len(hits),
        "hits_per_detector": per_detector,
        "adc_sum": adc_sum,
        "adc_mean": mean,
        "adc_rms": math.sqrt(max(adc_sq / n - mean * mean, 0.0)),
        "max_hits_in_tf": max((len(tf.hits) for tf in timeframes), default=0),
        "produced_at": datetime.now(UTC).isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--inject-failure", action="store_true")
    args = parser.parse_args(argv)
    if args.inject_failure:
        print("injected failure (fault injection requested)", file=sys.stderr)
        return EXIT_INJECTED
    try:
        result = reconstruct(args.input)
    except (OSError, ValueError) as error:
        print(f"cannot reconstruct {args.input}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
