"""PFNs of the POSIX RSEs: ``file://localhost/<path>`` <-> local path."""

from __future__ import annotations

from pathlib import Path


def file_path(pfn: str) -> str:
    """Local path of a ``file://`` PFN."""
    return pfn.removeprefix("file://localhost").removeprefix("file://")


def file_pfn(path: str) -> str:
    return f"file://localhost{Path(path).resolve()}"
