"""The one naming convention for ePIC streaming data (see docs/naming.md).

STF files      swf.<run:06d>.<seq:06d>.stf                       e.g. swf.000123.000042.stf
TF samples     swf.<run:06d>.<seq:06d>_tf_<n:03d>.tf
Outside runs   swf.<state>.<segment>.<seq:06d>.stf               segment = UTC yyyymmddThhmmss
Scope          epic           (the testbed uses group.daq)
Run dataset    epic:swf.<run:06d>.run                             (testbed: group.daq:swf.<run>.run)
E1 subsets     epic:swf.<run:06d>.E1_BNL / epic:swf.<run:06d>.E1_JLAB
Merged output  swf.<run:06d>.<site>.merge_<k:04d>.json, swf.<run:06d>.run.merged.json
Retried jobs   their output gets .a<attempt> before the extension (DIDs are immutable)
"""

from __future__ import annotations

import re

SCOPE = "epic"
TESTBED_SCOPE = "group.daq"

_STF_RE = re.compile(r"^swf\.(?P<run>\d{6})\.(?P<seq>\d{6})\.stf$")


def stf_filename(run_number: int, sequence: int) -> str:
    return f"swf.{run_number:06d}.{sequence:06d}.stf"


def stream_stf_filename(state: str, segment: str, sequence: int) -> str:
    """STFs streamed outside a run ("always on", R3.2)."""
    return f"swf.{state}.{segment}.{sequence:06d}.stf"


def tf_sample_filename(stf_name: str, index: int) -> str:
    return f"{stf_name.removesuffix('.stf')}_tf_{index:03d}.tf"


def parse_stf_filename(name: str) -> tuple[int, int]:
    """Return (run, sequence) of a run STF name, or raise ValueError naming the convention."""
    match = _STF_RE.match(name)
    if not match:
        raise ValueError(
            f"{name!r} does not follow the STF naming convention "
            "'swf.<run:06d>.<seq:06d>.stf' (e.g. 'swf.000123.000042.stf')"
        )
    return int(match["run"]), int(match["seq"])


def run_dataset(run_number: int) -> str:
    return f"swf.{run_number:06d}.run"


def stream_dataset(state: str, segment: str) -> str:
    return f"swf.{state}.{segment}.stream"


def site_dataset(run_number: int, site: str) -> str:
    return f"swf.{run_number:06d}.{site}"


def merge_filename(run_number: int, site: str, index: int) -> str:
    return f"swf.{run_number:06d}.{site}.merge_{index:04d}.json"


def run_merged_filename(run_number: int) -> str:
    return f"swf.{run_number:06d}.run.merged.json"


def attempt_filename(name: str, attempt: int) -> str:
    """Outputs are immutable DIDs, so a retried job writes a new name: ``x.json``, ``x.a2.json``."""
    if attempt <= 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.a{attempt}{dot}{ext}"


def reco_output_filename(stf_name: str) -> str:
    return f"{stf_name.removesuffix('.stf')}.reco.json"


def testbed_run_dataset(run_number: int) -> str:
    """Name the ePIC testbed gives the same run dataset (kept for interoperability)."""
    return f"{TESTBED_SCOPE}:swf.{run_number}.run"


def testbed_site_dataset(run_number: int, site: str) -> str:
    return f"{TESTBED_SCOPE}:run.{run_number}.{site}"
