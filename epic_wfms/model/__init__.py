"""Domain model: plain, validated records that every other package shares. Depends on nothing.

Names are resolved lazily (PEP 562) so that payload subprocesses importing only
``model.checksum`` or ``model.stf_file`` start fast, without pydantic.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataFlavour": "detector",
    "DetectorState": "detector",
    "Readiness": "detector",
    "Run": "run",
    "RunType": "run",
    "SuperTimeFrame": "stf",
    "TFSample": "stf",
    "parse_record": "validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"epic_wfms.model.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'epic_wfms.model' has no attribute {name!r}")
