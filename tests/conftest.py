"""Shared fixtures: a real embedded installation (SQLite, in-process bus, local workers)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from epic_wfms.config import Config, load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.installation import Installation
from epic_wfms.store.scratch import scratch_schema
from tests.rucio_fixtures import rucio_scope, rucio_server  # noqa: F401 (session fixtures)


class StreamingRig:
    """An installation with every streaming role (as the demo builds it) plus the E0 DAQ
    simulator playing into its DAQ buffer."""

    def __init__(self, config: Config, daq_settings: DaqSettings,
                 roles: tuple[str, ...] | None = None) -> None:
        self.installation = Installation.build(config, roles)
        self.orchestrator = self.installation.start()
        self.daq = self.installation.daq(daq_settings)
        self.config, self.db, self.bus = config, self.installation.db, self.installation.bus
        self.ddm, self.executor = self.installation.ddm, self.installation.executor
        self.ctx = self.orchestrator.ctx

    def close(self) -> None:
        self.installation.close()


# `make test` runs the suite on two xdist workers (`-n 2 --dist loadgroup`). These modules
# share the machine's RabbitMQ (test_services stops it for a while) or the session's Rucio
# server, or start the whole loopback stack: they run one after another on one worker,
# first, while the other worker takes every other test (those with a PanDA server or
# Harvester of their own included: they share nothing, and the two workers end together).
SERVER_MODULES = frozenset({
    "test_bus", "test_ddm", "test_fastpath_pilot_workers", "test_fastpath_services",
    "test_idds", "test_idds_server", "test_idds_stack", "test_panda_jedi",
    "test_rucio_services", "test_rucio_streaming", "test_services", "test_streaming_panda",
    "test_testbed", "test_trust_bus"})


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SERVER_MODULES:
            item.add_marker(pytest.mark.xdist_group("servers"))
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)  # stable


POSTGRES_URL = os.environ.get(
    "EPIC_WFMS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def private_postgres_schema():
    """A URL whose search_path is a fresh schema, dropped afterwards: tests never collide."""
    return scratch_schema(POSTGRES_URL)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL schema for one test (the services arrangement's store)."""
    with private_postgres_schema() as url:
        yield url


def wait_until(condition, timeout_s: float, what: str):
    """``condition()``'s first true value, polled every second; fails the test after
    ``timeout_s`` saying what did not happen (for the slow servers of the loopback stack)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(1)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def wait_for(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """The store's tests run on both backends; PostgreSQL gets a private schema per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bookkeeping.sqlite'}"
        return
    with private_postgres_schema() as url:
        yield url


def make_config(tmp_path: Path, database_url: str | None = None, **processing: object) -> Config:
    settings = {"merge_every": 4, "idle_suspend_s": 30.0, "missing_grace_s": 3.0,
                "retry": {"max_attempts": 3, "backoff_s": 0.05}, **processing}
    return load_config(data_dir=tmp_path / "wfms", database_url=database_url,
                       processing=settings, fastpath={"enabled": False})  # own tests


@pytest.fixture
def daq_settings() -> DaqSettings:
    return DaqSettings(stf_size_bytes=8 * 1024, tfs_per_stf=20, rate_hz=0, tf_sample_size=5)


@pytest.fixture
def installation_factory(
    tmp_path: Path, daq_settings: DaqSettings, database_url: str
) -> Iterator:
    made: list[StreamingRig] = []

    def make(config: Config | None = None, settings: DaqSettings | None = None,
             roles: tuple[str, ...] | None = None) -> StreamingRig:
        config = config or make_config(tmp_path, database_url)
        inst = StreamingRig(config, settings or daq_settings, roles)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        inst.close()


@pytest.fixture
def installation(installation_factory) -> StreamingRig:
    return installation_factory()
