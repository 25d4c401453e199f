"""The one naming convention for ePIC streaming data (see docs/naming.md).

STF files      swf.<run:06d>.<seq:06d>.stf                       e.g. swf.000123.000042.stf
TF samples     swf.<run:06d>.<seq:06d>_tf_<n:03d>.tf
Outside runs   swf.<state>.<segment>.<seq:06d>.stf               segment = UTC yyyymmddThhmmss
Scope          epic           (the testbed uses group.daq)
Run dataset    epic:swf.<run:06d>.run                             (testbed: group.daq:swf.<run>.run)
E1 subsets     epic:swf.<run:06d>.E1_BNL / epic:swf.<run:06d>.E1_JLAB
Merged output  swf.<run:06d>.<site>.merge_<k:04d>.json, swf.<run:06d>.run.merged.json
               (gathered again after late STFs: swf.<run:06d>.run.merged.g<n>.json)
Retried jobs   their output gets .a<attempt> before the extension (DIDs are immutable)

Every name that reaches a file system is one path component of safe characters
(``check_file_name``): a name from a message can never become ``../..`` or ``/etc/...``.
"""

from __future__ import annotations

import re

SCOPE = "epic"
TESTBED_SCOPE = "group.daq"

_STF_RE = re.compile(r"^swf\.(?P<run>\d{6})\.(?P<seq>\d{6})\.stf$")
_STREAM_STF_RE = re.compile(
    r"^swf\.(?P<state>[a-z_]+)\.(?P<segment>\d{8}T\d{6})\.(?P<seq>\d{6})\.stf$")
SEGMENT_PATTERN = r"^\d{8}T\d{6}$"
# one path component: no separator, no leading dot (so never '.', '..' or a hidden file), no
# control character; 255 is the file-name limit of POSIX file systems (and of Rucio names)
FILE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,254}$"
_FILE_NAME_RE = re.compile(FILE_NAME_PATTERN)


def check_file_name(name: str) -> str:  # also a pydantic validator (model.stf, bus.messages)
    """``name`` if it is a safe single file name, else ValueError saying what is allowed."""
    if not isinstance(name, str) or not _FILE_NAME_RE.match(name):
        raise ValueError(
            f"{str(name)[:80]!r} is not a valid file name: names are one path component of "
            "letters, digits and _ . + - (at most 255, not starting with '.'), e.g. "
            "'swf.000123.000042.stf'"
        )
    return name


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


def check_stream_stf_filename(name: str, state: str, sequence: int,
                              segment: str | None = None) -> None:
    """An STF streamed outside a run must be named ``swf.<state>.<segment>.<seq:06d>.stf`` for
    its own state and sequence (and its DAQ segment, when the DAQ states one)."""
    match = _STREAM_STF_RE.match(name)
    expected = stream_stf_filename(state, segment or "<yyyymmddThhmmss>", sequence)
    if (not match or match["state"] != state or int(match["seq"]) != sequence
            or (segment is not None and match["segment"] != segment)):
        raise ValueError(
            f"filename {name[:80]!r} does not follow the naming convention for an STF "
            f"outside a run; expected {expected!r}"
        )


def run_dataset(run_number: int) -> str:
    return f"swf.{run_number:06d}.run"


def stream_dataset(state: str, segment: str) -> str:
    return f"swf.{state}.{segment}.stream"


def site_dataset(run_number: int, site: str) -> str:
    return f"swf.{run_number:06d}.{site}"


def merge_filename(run_number: int, site: str, index: int) -> str:
    return f"swf.{run_number:06d}.{site}.merge_{index:04d}.json"


def run_merged_filename(run_number: int, gather_index: int = 0) -> str:
    """The run's merged output; a run gathered again after late STFs gets ``.g<n>``."""
    suffix = f".g{gather_index + 1}" if gather_index else ""
    return f"swf.{run_number:06d}.run.merged{suffix}.json"


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
