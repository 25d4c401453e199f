"""The testbed's own virtualenv (``.venv-testbed``): swf-common-lib from its pinned source and
the workflow runner's dependencies from PyPI, built once and cached."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loopback.common import ensure_venv, server_venv
from loopback.testbed.source import source_tree

REQUIREMENTS = Path(__file__).with_name("requirements.txt")


@dataclass(frozen=True)
class TestbedInstall:
    __test__ = False  # not a pytest test class
    venv: Path
    testbed: Path  # the swf-testbed tree (workflows/, agents/)
    common_lib: Path  # the swf-common-lib tree

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def ensure_testbed() -> TestbedInstall:
    """Sources found (or SourceUnavailable), virtualenv built: ready to run a workflow."""
    venv = server_venv("testbed", "EPIC_WFMS_TESTBED_VENV")
    cache = venv.parent / f"{venv.name}-src"
    testbed = source_tree("swf-testbed", cache)
    common_lib = source_tree("swf-common-lib", cache)
    ensure_venv(venv, REQUIREMENTS, "ePIC testbed", first=[str(common_lib)])
    return TestbedInstall(venv, testbed, common_lib)
