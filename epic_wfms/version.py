"""Which build this is: the version setuptools-scm derived from git tags when the package was
built (``v0.1.0`` -> ``0.1.0``; commits after a tag -> ``0.1.1.devN+g<hash>``), read from the
installed distribution's metadata, so a wheel knows it without git."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "epic-wfms"
UNKNOWN = "0.0.0"  # as [tool.setuptools_scm] fallback_version: not installed


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return UNKNOWN
