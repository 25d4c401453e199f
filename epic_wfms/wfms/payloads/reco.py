"""Reconstruction stand-in: decode an STF file and write derived quantities as JSON.

Run as ``python -m epic_wfms.wfms.payloads.reco --input STF --output OUT.json``. Exit codes
follow the pilot convention: 0 ok, 64 bad input file, 65 injected failure (tests, demos).

An STF in our simulated format (``EPICSTF1``) is decoded hit by hit; any other file (the
ePIC testbed's STFs are a JSON line of its ``stf_gen`` message) is processed as opaque data:
its size and adler32 are recorded, with no hits. A truncated file of our format still fails.
"""

from __future__ import annotations

import argparse
import functools
import math
import operator
import sys
from array import array
from datetime import UTC, datetime
from pathlib import Path

from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf_file import (
    DETECTOR_BITS,
    DETECTOR_CHANNELS,
    HIT,
    MAGIC,
    iter_tf_records,
    read_header,
)
from epic_wfms.wfms.payloads.results import EXIT_BAD_INPUT, EXIT_INJECTED, write_result


def reconstruct(stf_path: Path) -> dict:
    """Decode every hit of the STF, array-wise: channels and ADCs are strided views of the
    raw little-endian ``<HHI`` records, so the per-hit work runs in C, not in a Python loop."""
    with stf_path.open("rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            return opaque(stf_path)
    names = list(DETECTOR_CHANNELS)
    per_detector = dict.fromkeys(names, 0)
    n_tf = n_hits = adc_sum = adc_sq = max_hits = 0
    with stf_path.open("rb") as handle:
        header = read_header(handle)
        for _index, body in iter_tf_records(handle):
            words = array("H", body)  # channel, adc, time low, time high per hit
            if sys.byteorder == "big":
                words.byteswap()
            adcs = words[1::4]
            subsystems = body[1::HIT.size].translate(_SUBSYSTEM_OF_HIGH_BYTE)
            for number, name in enumerate(names):
                per_detector[name] += subsystems.count(number)
            n_tf += 1
            n_hits += len(adcs)
            max_hits = max(max_hits, len(adcs))
            adc_sum += sum(adcs)
            adc_sq += sum(map(operator.mul, adcs, adcs))
    n = max(n_hits, 1)
    mean = adc_sum / n
    return {
        "stf": stf_path.name,
        "run_number": header.get("run_number"),
        "sequence": header.get("sequence"),
        "input_adler32": file_adler32(stf_path),
        "n_tf": n_tf,
        "n_hits": n_hits,
        "hits_per_detector": per_detector,
        "adc_sum": adc_sum,
        "adc_mean": mean,
        "adc_rms": math.sqrt(max(adc_sq / n - mean * mean, 0.0)),
        "max_hits_in_tf": max_hits,
        "produced_at": datetime.now(UTC).isoformat(),
    }


def opaque(stf_path: Path) -> dict:
    """A file in another format: what can be said without decoding it."""
    return {
        "stf": stf_path.name, "format": "opaque", "size_bytes": stf_path.stat().st_size,
        "input_adler32": file_adler32(stf_path), "n_tf": 0, "n_hits": 0,
        "hits_per_detector": dict.fromkeys(DETECTOR_CHANNELS, 0), "adc_sum": 0,
        "adc_mean": 0.0, "adc_rms": 0.0, "max_hits_in_tf": 0,
        "produced_at": datetime.now(UTC).isoformat(),
    }


# the channel's high byte (byte 1 of a little-endian hit) names its subsystem: >> (14 - 8)
_SUBSYSTEM_OF_HIGH_BYTE = bytes(b >> (DETECTOR_BITS - 8) for b in range(256))


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """Built once per process: a pilot runs this payload for one STF after another."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--inject-failure", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
