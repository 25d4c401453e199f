"""Announcements from the DAQ side of the broker name files only inside the DAQ buffer.

Whoever can publish on the broker can announce any path; ingest, the TF-sample book, the
slicer and the fast-path workers read only files that resolve inside
``<data_dir>/rses/<daq_rse>`` and were announced on ``daq_rse``. Anything else is refused
(``RefusedMessageError``: dead-lettered at once, the rest of the batch goes on).
"""

from __future__ import annotations

from pathlib import Path

from epic_wfms.config import Config
from epic_wfms.errors import RefusedMessageError
from epic_wfms.security.paths import OutsideAreaError, confine


def daq_buffer(config: Config) -> Path:
    return config.daq_buffer  # the DAQ buffer RSE's directory (configurable: rses[].root)


def daq_file(config: Config, path: str, rse: str | None, what: str) -> Path:
    """The announced file's resolved path, if it lies in the DAQ buffer and was announced on
    the DAQ's RSE; else RefusedMessageError saying what and where it should be."""
    if rse is not None and rse != config.daq_rse:
        raise RefusedMessageError(
            f"{what} was announced on RSE {rse[:40]!r}",
            f"files enter only through the DAQ buffer (daq_rse {config.daq_rse})",
            f"announce it on {config.daq_rse}")
    try:
        return confine(path, daq_buffer(config), what)
    except OutsideAreaError as error:
        raise RefusedMessageError(error.what, error.why, error.fix) from None
