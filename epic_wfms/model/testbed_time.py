"""Timestamps of the ePIC testbed: ISO 8601 local time without a time zone (its
``datetime.now().isoformat()``), read in the configured zone (``testbed.timezone``)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from epic_wfms.errors import ConfigurationError


def zone(name: str) -> tzinfo:
    """``local`` (this host's zone), ``UTC`` or an IANA zone name."""
    if name == "local":
        return datetime.now().astimezone().tzinfo or UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}", "it is not in the system's IANA time-zone database",
            "use an IANA name such as America/New_York, UTC, or local",
        ) from None


def testbed_time(value: object, tz: tzinfo) -> datetime:
    """An aware time from the testbed's ``timestamp`` (naive: in ``tz``), or epoch seconds."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
