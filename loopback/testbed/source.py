"""Where the testbed's pinned sources come from (they are not on PyPI).

Looked up in this order, for each of ``swf-testbed`` and ``swf-common-lib``:

1. ``$EPIC_WFMS_SWF_TESTBED_SRC`` / ``$EPIC_WFMS_SWF_COMMON_LIB_SRC``: a checkout, a bare git
   directory or a ``.tar.gz`` of the tree;
2. ``<checkout>/../shared/vendor/<name>-<commit[:8]>.tar.gz`` (unmodified upstream archives);
3. a mirror of the GitHub repository (``$EPIC_WFMS_UPSTREAM_MIRROR``, default ``/work/.mirror``,
   as ``BNLNPPS+<name>/repo``), a bare git directory;
4. ``git clone https://github.com/BNLNPPS/<name>`` (needs the internet).

The pinned commit is extracted (``git archive``) into ``.venv-testbed-src/<name>-<commit[:8]>``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from loopback.common import REPO, HarnessError, run_checked

PINNED = {
    "swf-testbed": "ab14c26a38d2db962b67a75f3c23bf00a758b3f5",  # 2026-07-23
    "swf-common-lib": "0035410ca3fa144bbc7349bd8ff6a358c274280e",  # 2026-07-22
}
GITHUB = "https://github.com/BNLNPPS/{name}"


class SourceUnavailable(HarnessError):
    """No copy of a pinned testbed repository could be found or fetched."""


def _env_name(name: str) -> str:
    return "EPIC_WFMS_" + name.upper().replace("-", "_") + "_SRC"


def source_tree(name: str, cache: Path) -> Path:
    """The pinned tree of ``name``, extracted once under ``cache``."""
    commit = PINNED[name]
    target = cache / f"{name}-{commit[:8]}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    tried = []
    for origin in _origins(name):
        tried.append(str(origin))
        if _extract(origin, commit, target):
            (target / ".complete").write_text(f"{origin}\n")
            return target
    shutil.rmtree(target, ignore_errors=True)
    raise SourceUnavailable(
        f"no source of {name} at commit {commit[:8]}",
        f"tried: {'; '.join(tried)}",
        f"set {_env_name(name)} to a checkout, bare git directory or .tar.gz of "
        f"{GITHUB.format(name=name)} (commit {commit})",
    )


def _origins(name: str) -> list[Path | str]:
    origins: list[Path | str] = []
    if os.environ.get(_env_name(name)):
        origins.append(Path(os.environ[_env_name(name)]))
    origins.append(REPO.parent / "shared" / "vendor" / f"{name}-{PINNED[name][:8]}.tar.gz")
    mirror = Path(os.environ.get("EPIC_WFMS_UPSTREAM_MIRROR", "/work/.mirror"))
    origins.append(mirror / f"BNLNPPS+{name}" / "repo")
    origins.append(GITHUB.format(name=name))
    return origins


def _extract(origin: Path | str, commit: str, target: Path) -> bool:
    if isinstance(origin, str):  # a URL: clone, then archive from the clone
        clone = target.parent / f".clone-{target.name}"
        shutil.rmtree(clone, ignore_errors=True)
        proc = subprocess.run(["git", "clone", "--quiet", "--bare", origin, str(clone)],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
        try:
            return proc.returncode == 0 and _extract(clone, commit, target)
        finally:
            shutil.rmtree(clone, ignore_errors=True)
    if not origin.exists():
        return False
    if origin.is_file():
        with tarfile.open(origin) as archive:
            archive.extractall(target, filter="data")
        _flatten(target)
        return True
    git_dir = origin / ".git" if (origin / ".git").exists() else origin
    if not (git_dir / "HEAD").exists():  # a plain tree (an unpacked archive)
        shutil.copytree(origin, target, dirs_exist_ok=True)
        return True
    tar = target.parent / f".{target.name}.tar"
    try:
        run_checked(["git", f"--git-dir={git_dir}", "archive", "--format=tar",
                     f"--output={tar}", commit], f"git archive {commit[:8]} of {git_dir}")
        with tarfile.open(tar) as archive:
            archive.extractall(target, filter="data")
    finally:
        tar.unlink(missing_ok=True)
    return True


def _flatten(target: Path) -> None:
    """An archive holding one top folder (GitHub's style) is unpacked into ``target``."""
    entries = [p for p in target.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(target / child.name)
        inner.rmdir()
