"""Brokerage decisions and resource usage in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from epic_wfms.brokerage import Broker, Fabric, FabricState, JobRequest
from epic_wfms.errors import EpicWfmsError
from epic_wfms.sites import load_catalogue
from epic_wfms.store import accounting
from epic_wfms.store.database import Database
from epic_wfms.store.schema import Base
from tests.conftest import private_postgres_schema

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
        database.create_schema()
        yield database
        database.dispose()
        return
    with private_postgres_schema() as url:
        database = Database(url)
        database.create_schema()
        yield database
        database.dispose()


def test_migrations_create_exactly_the_models_tables(db):
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    ours = [d for d in diff if "brokerage_decisions" in str(d) or "resource_usage" in str(d)]
    assert ours == []


def test_why_did_my_job_go_there(db):
    broker = Broker(FabricState(Fabric.from_catalogue(load_catalogue())))
    req = JobRequest("task7.job42", "reconstruction", cores=8, input_rses=("JLAB_DISK",),
                     input_gb=16, user="alice", workflow="task7")
    impossible = JobRequest("task7.job43", "reconstruction", cores=512, user="alice",
                            workflow="task7")
    pairs = [(broker.decide(r), r) for r in (req, impossible)]
    assert accounting.record_decisions(db, pairs, T0) == 2
    [answer] = accounting.why(db, "task7.job42")
    assert answer["site"] == "E1_JLAB" and answer["outcome"] == "assigned"
    assert answer["reasons"]["input_at_site"] is True
    assert set(answer["reasons"]["components"]) >= {"locality", "capacity", "share"}
    [refused] = accounting.why(db, "task7.job43")
    assert refused["outcome"] == "no_candidate" and "cores" in refused["reasons"]["rejected"]
    assert accounting.decisions_by_site(db) == {"E1_JLAB": 1}


def test_usage_by_workflow_user_site_activity(db):
    u = accounting.Usage
    accounting.record_usage(db, [
        u("j1", "E1_BNL", "BNL_PROD", "reconstruction", "finished", 8, T0, T0 + timedelta(hours=2),
          "task7", "alice"),
        u("j2", "E1_BNL", "BNL_PROD", "reconstruction", "failed", 8, T0, T0 + timedelta(hours=1),
          "task7", "alice"),
        u("j3", "E2_NERSC", "NERSC_PERLMUTTER_GPU", "ml", "finished", 16, T0,
          T0 + timedelta(hours=3), "train1", "bob", gpus=2),
    ])
    by_site = accounting.usage_summary(db, ("site", "activity"))
    assert by_site == [
        {"site": "E1_BNL", "activity": "reconstruction", "core_hours": 24.0, "gpu_hours": 0.0,
         "jobs": 2},
        {"site": "E2_NERSC", "activity": "ml", "core_hours": 48.0, "gpu_hours": 6.0, "jobs": 1},
    ]
    by_user = accounting.usage_summary(db, ("user",))
    assert [(r["user"], r["core_hours"]) for r in by_user] == [("alice", 24.0), ("bob", 48.0)]
    by_workflow = accounting.usage_summary(db, ("workflow",), since=T0 + timedelta(hours=2))
    assert [(r["workflow"], r["jobs"]) for r in by_workflow] == [("task7", 1), ("train1", 1)]


def test_bad_accounting_input_is_refused(db):
    with pytest.raises(EpicWfmsError, match="cannot group usage by \\['colour'\\]"):
        accounting.usage_summary(db, ("colour",))
    backwards = accounting.Usage("j9", "E1_BNL", "BNL_PROD", "simulation", "finished", 1, T0,
                                 T0 - timedelta(seconds=1))
    with pytest.raises(EpicWfmsError, match="ends before it starts"):
        accounting.record_usage(db, [backwards])
    assert accounting.usage_summary(db, ("site",)) == []  # nothing half-written
