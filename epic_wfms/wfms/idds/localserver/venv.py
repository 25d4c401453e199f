"""The loopback iDDS server's own virtualenv (``.venv-idds``), built once and cached.

idds-server pins oracledb, psycopg2, redis, pyzmq, oic and more that our venv does not need:
it runs from its own venv, installed from ``requirements.txt`` (idds 2.6.21 and what pip
resolved for it on Python 3.11); a stamp holds the file's digest, so editing it rebuilds.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from epic_wfms.wfms.idds.errors import IddsError

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
IDDS_SERVER = "idds-server==2.6.21"


def default_venv() -> Path:
    return Path(os.environ.get("EPIC_IDDS_VENV", REPO / ".venv-idds"))


def _requirements_digest() -> str:
    return hashlib.sha256((HERE / "requirements.txt").read_bytes()).hexdigest()[:16]


def run_checked(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        raise IddsError(f"{what} failed (exit {proc.returncode})",
                        why=(proc.stderr or proc.stdout)[-1500:],
                        fix="read the output above; rerun `bash .ci/services-up`")
    return proc


def ensure_venv(venv: Path | None = None) -> Path:
    """Create (once, then cached) the isolated venv that runs idds-server."""
    venv = venv or default_venv()
    stamp = venv / ".epic-installed"
    if stamp.exists() and stamp.read_text() == _requirements_digest():
        return venv
    if not (venv / "bin" / "python").exists():
        run_checked(["python3.11", "-m", "venv", str(venv)], "creating the iDDS venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    run_checked([*pip, "--upgrade", "pip"], "upgrading pip in the iDDS venv")
    run_checked([*pip, "-r", str(HERE / "requirements.txt")], f"installing {IDDS_SERVER}")
    stamp.write_text(_requirements_digest())
    return venv


def main(argv: list[str]) -> int:
    """``python -m epic_wfms.wfms.idds.localserver prepare``: build ``.venv-idds`` (cached)."""
    if argv[:1] != ["prepare"]:
        print("usage: python -m epic_wfms.wfms.idds.localserver prepare", file=sys.stderr)
        return 2
    print(f"iDDS server venv ready: {ensure_venv()}")
    return 0
