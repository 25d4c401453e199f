"""Adler-32 checksums written the way Rucio stores them (8 lower-case hex digits)."""

from __future__ import annotations

import zlib
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


def adler32_of_bytes(data: bytes, value: int = 1) -> int:
    """Running adler32 over ``data``; start from 1 as zlib does."""
    return zlib.adler32(data, value)


def adler32_hex(value: int) -> str:
    """Format as Rucio does: zero-padded, 8 lower-case hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"


def file_adler32(path: Path) -> str:
    """Adler32 of a file, streamed in chunks so 2 GB STFs never sit in memory."""
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            value = zlib.adler32(chunk, value)
    return adler32_hex(value)


def to_testbed_checksum(adler32: str) -> str:
    """The ePIC testbed writes checksums as ``ad:<hex>``."""
    return f"ad:{adler32}"


def from_testbed_checksum(text: str) -> str:
    """Accept ``ad:<hex>`` (testbed) or bare hex (Rucio) and return bare hex."""
    value = text.removeprefix("ad:").strip().lower()
    if len(value) != 8 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(
            f"checksum {text!r} is not an adler32 value; expected 8 hex digits, "
            "optionally prefixed by 'ad:' (e.g. 'ad:0a1b2c3d')"
        )
    return value
