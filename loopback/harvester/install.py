"""Harvester's own virtualenv: pandaharvester 0.7.5 (not on PyPI) and its runtime.

Harvester is installed from the unmodified upstream source: the vendored archive
``../shared/vendor/pandaharvester-0.7.5-src.tar.gz`` beside the checkout when it is there
(CI machines cannot reach GitHub), else HSF/harvester at the same commit from GitHub (what a
user with internet access installs). It goes in ``--no-deps`` first (its metadata pins
nothing), then the runtime pinned in ``requirements.txt``. Its build hook, run as root,
looks up the service account ``atlpan:zp`` (``.ci/services-up`` creates it).
"""

from __future__ import annotations

import os
from pathlib import Path

from loopback.common import REPO, server_venv
from loopback.common import ensure_venv as ensure_venv_of
from loopback.panda.server import ensure_service_account

HERE = Path(__file__).resolve().parent
VERSION = "0.7.5"
VENDORED = REPO.parent / "shared" / "vendor" / f"pandaharvester-{VERSION}-src.tar.gz"
UPSTREAM = "git+https://github.com/HSF/harvester@d561b72f"


def default_venv() -> Path:
    return server_venv("harvester", "EPIC_HARVESTER_VENV")


def harvester_source() -> str:
    """What pip installs Harvester from: ``$EPIC_HARVESTER_SOURCE``, the vendored archive,
    or the upstream commit."""
    if explicit := os.environ.get("EPIC_HARVESTER_SOURCE"):
        return explicit
    return str(VENDORED) if VENDORED.exists() else UPSTREAM


def ensure_venv(venv: Path | None = None) -> Path:
    """``.venv-harvester``: built once, then cached (rebuilt when the pins change)."""
    ensure_service_account()
    return ensure_venv_of(venv or default_venv(), HERE / "requirements.txt", "Harvester",
                          first=[harvester_source()])


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def template(venv: Path, name: str) -> Path:
    """A configuration template Harvester's wheel installs under ``<venv>/etc/panda``."""
    return venv / "etc" / "panda" / name
