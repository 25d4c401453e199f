"""An installation's files are its own: the data directory and the SQLite store are not
readable by other users of the host (they hold user names, paths, the local issuer's key).

A data directory made here is 0700 (an existing one is left as the operator set it, with a
warning when others may read it); a new SQLite store is 0600 (SQLite gives its -wal and -shm
files the same mode) and an existing one loses the permissions of "others".
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def private_directory(path: Path) -> Path:
    path = Path(path)
    if path.exists():
        with contextlib.suppress(OSError):
            if stat.S_IMODE(path.stat().st_mode) & 0o004:
                log.warning("%s is readable by every user of this host; it holds the store "
                            "and keys: chmod o-rwx %s", path, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another agent made it meanwhile
        path.mkdir(mode=0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing, else drop the others' permissions."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        with contextlib.suppress(OSError):  # not ours to change (read-only, other owner)
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o007:
                path.chmod(mode & ~0o007)
    return path
