"""On-disk format of the simulated STF and TF-sample files (docs/naming.md#file-format).

Layout: magic ``EPICSTF1`` | u32 header length | JSON header | TF records. A TF record is
``<IH`` (tf index, hit count) followed by ``hit count`` hits of ``<HHI`` (channel, adc, time in
ps since the TF start). Real STFs are ~2 GB of detector data; the simulator writes the same
structure at a configurable (small) size so payloads do real I/O and real decoding.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"EPICSTF1"
SAMPLE_MAGIC = b"EPICTFS1"
TF_HEADER = struct.Struct("<IH")
HIT = struct.Struct("<HHI")
_LEN = struct.Struct("<I")

DETECTOR_BITS = 14  # channel >> 14 is the subsystem: 16384 channels each
DETECTOR_CHANNELS = {  # channel ranges per subsystem, used by the reco stand-in
    "tracker": range(0, 16384),
    "ecal": range(16384, 32768),
    "hcal": range(32768, 49152),
    "pid": range(49152, 65536),
}


@dataclass(frozen=True)
class TimeFrame:
    index: int
    hits: list[tuple[int, int, int]]


def hits_per_tf_for(size_bytes: int, tf_count: int) -> int:
    """Hit count per TF so that the file is about ``size_bytes`` long."""
    per_tf = max(size_bytes // max(tf_count, 1) - TF_HEADER.size, HIT.size)
    return max(1, min(per_tf // HIT.size, 65535))


def _write_header(handle: BinaryIO, magic: bytes, header: dict[str, Any]) -> None:
    blob = json.dumps(header, sort_keys=True).encode()
    handle.write(magic + _LEN.pack(len(blob)) + blob)


SATURATED_ADC = 0xFFFF
HOT_CHANNEL = 16384 + 7  # an ECAL channel: where an injected anomaly puts its hits


def write_stf(
    path: Path, header: dict[str, Any], tf_count: int, hits_per_tf: int, rng: random.Random,
    saturated_tfs: frozenset[int] = frozenset(),
) -> None:
    """Write an STF file with ``tf_count`` TFs of pseudo-random hits; a TF listed in
    ``saturated_tfs`` is an anomaly (one hot ECAL channel, every ADC saturated), for tests."""
    with path.open("wb") as handle:
        _write_header(handle, MAGIC, {**header, "tf_count": tf_count})
        for index in range(tf_count):
            n_hits = max(1, hits_per_tf + rng.randint(-hits_per_tf // 10, hits_per_tf // 10))
            n_hits = min(n_hits, 65535)
            body = rng.randbytes(n_hits * HIT.size)
            if index in saturated_tfs:
                body = b"".join(HIT.pack(HOT_CHANNEL, SATURATED_ADC, i) for i in range(n_hits))
            handle.write(TF_HEADER.pack(index, n_hits) + body)


MAX_HEADER = 1 << 20


def read_header(handle: BinaryIO, magic: bytes = MAGIC) -> dict[str, Any]:
    """The JSON header; ValueError (never another error) for a file that is not one of ours,
    truncated, or whose header is not a JSON object."""
    found = handle.read(len(magic))
    if found != magic:
        raise ValueError(f"not an ePIC file of this kind: magic {found!r}, expected {magic!r}")
    raw = handle.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise ValueError("truncated header: the file is incomplete")
    (length,) = _LEN.unpack(raw)
    if length > MAX_HEADER:
        raise ValueError(f"header of {length} bytes: not an ePIC file (at most {MAX_HEADER})")
    blob = handle.read(length)
    if len(blob) != length:
        raise ValueError("truncated header: the file is incomplete")
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"the header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    return header


def iter_tf_records(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield ``(tf index, raw hit bytes)`` after the header, for decoders that work on whole
    arrays of hits; raise ValueError on a truncated record."""
    while raw := handle.read(TF_HEADER.size):
        if len(raw) != TF_HEADER.size:
            raise ValueError("truncated TF header: the file is incomplete")
        index, n_hits = TF_HEADER.unpack(raw)
        body = handle.read(n_hits * HIT.size)
        if len(body) != n_hits * HIT.size:
            raise ValueError(f"truncated TF {index}: the file is incomplete")
        yield index, body


def iter_timeframes(handle: BinaryIO) -> Iterator[TimeFrame]:
    """Yield TFs after the header, hits decoded; raise ValueError on a truncated record."""
    for index, body in iter_tf_records(handle):
        yield TimeFrame(index, list(HIT.iter_unpack(body)))


def read_stf(path: Path) -> tuple[dict[str, Any], list[TimeFrame]]:
    with path.open("rb") as handle:
        header = read_header(handle)
        return header, list(iter_timeframes(handle))


def write_tf_sample(
    stf_path: Path, sample_path: Path, first_tf: int, tf_count: int, header: dict[str, Any]
) -> int:
    """Copy TFs ``first_tf .. first_tf+tf_count-1`` of an STF into a TF-sample file."""
    with stf_path.open("rb") as source, sample_path.open("wb") as target:
        read_header(source)
        _write_header(target, SAMPLE_MAGIC, {**header, "first_tf": first_tf, "tf_count": tf_count})
        written = 0
        for index, body in iter_tf_records(source):  # raw records: copied, not re-encoded
            if index >= first_tf + tf_count:
                break
            if index >= first_tf:
                target.write(TF_HEADER.pack(index, len(body) // HIT.size) + body)
                written += 1
    return written
