"""Paths that come from outside (messages, files named by users) stay inside their area.

A path is resolved (``..`` and symbolic links followed) before it is compared with its area,
so neither ``/data/rses/DAQ_BUFFER/../../etc/hostname`` nor a symbolic link in the buffer that
points elsewhere gets out.
"""

from __future__ import annotations

from pathlib import Path

from epic_wfms.errors import EpicWfmsError


class OutsideAreaError(EpicWfmsError):
    """A path that leads out of the directory it must stay in."""


def confine(path: str | Path, area: Path, what: str) -> Path:
    """``path`` resolved, if it lies inside ``area`` (a relative path is taken inside it)."""
    text = str(path)
    if not text or "\x00" in text:
        raise OutsideAreaError(f"{what}: the path {text[:120]!r} is empty or holds a NUL byte",
                               "paths name files in the area", f"give a path inside {area}")
    root = area.resolve()
    candidate = Path(text)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise OutsideAreaError(
            f"{what}: the path {text[:200]!r} is outside {root}",
            f"it resolves to {resolved}" if str(resolved) != text else
            "files are only read from and written to their own area",
            f"announce files inside {root}")
    return resolved
