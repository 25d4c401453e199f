"""The embedded worker pool: PanDA job states, provenance, both payload runners, pilot death."""

import threading

import pytest
from sqlalchemy import select

from epic_wfms.store.database import Database
from epic_wfms.store.schema import JobRecord, ProvenanceRecord
from epic_wfms.wfms import JobSpec, JobStatus
from epic_wfms.wfms.embedded import LocalWorkerPool


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    database.create_schema()
    return database


def run_job(pool: LocalWorkerPool, spec: JobSpec):
    done = threading.Event()
    results = []
    pool.submit(spec, lambda result: (results.append(result), done.set()))
    assert done.wait(60)
    return results[0]


def merge_spec(tmp_path, *inputs):
    return JobSpec("merge", "E1_BNL", "epic_wfms.wfms.payloads.merge",
                   ["--output", str(tmp_path / "out.json"), *map(str, inputs)],
                   inputs=[p.name for p in inputs], output="out.json")


@pytest.mark.parametrize("runner", ["standing", "subprocess"])
def test_job_states_output_and_provenance(db, tmp_path, runner):
    good = tmp_path / "a.reco.json"
    good.write_text('{"stf": "a.stf", "n_tf": 1, "n_hits": 2, "adc_sum": 3, '
                    '"hits_per_detector": {"ecal": 2}}')
    pool = LocalWorkerPool(db, {"E1_BNL": 1}, runner=runner)
    started = []
    pool.add_start_listener(lambda jobs, at: started.extend(job_id for job_id, _ in jobs))
    try:
        result = run_job(pool, merge_spec(tmp_path, good))
        assert result.status is JobStatus.FINISHED and started == [result.job_id]
        assert '"n_stfs": 1' in (tmp_path / "out.json").read_text()
        broken = tmp_path / "b.reco.json"
        broken.write_text("not json")
        failed = run_job(pool, merge_spec(tmp_path, broken))
        assert failed.status is JobStatus.FAILED and failed.exit_code == 64
        assert "cannot merge" in failed.error
    finally:
        pool.shutdown()
    with db.session() as session:
        jobs = session.scalars(select(JobRecord).order_by(JobRecord.id)).all()
        edges = session.scalars(select(ProvenanceRecord)).all()
    assert [j.status for j in jobs] == ["finished", "failed"]
    assert all(j.activated_at <= j.started_at <= j.ended_at for j in jobs)
    assert [(e.input_name, e.output_name) for e in edges] == [("a.reco.json", "out.json")]


def test_a_dying_pilot_fails_only_its_job(db, tmp_path):
    good = tmp_path / "a.reco.json"
    good.write_text('{"stf": "a.stf", "n_tf": 1, "n_hits": 2, "adc_sum": 3, '
                    '"hits_per_detector": {}}')
    pool = LocalWorkerPool(db, {"E1_BNL": 1}, runner="standing")
    try:
        crash = run_job(pool, JobSpec("reco", "E1_BNL", "tests.crash_payload", [], [], "x"))
        assert crash.status is JobStatus.FAILED and "died running the payload" in crash.error
        assert run_job(pool, merge_spec(tmp_path, good)).status is JobStatus.FINISHED
    finally:
        pool.shutdown()


def test_unknown_runner_and_site(db):
    with pytest.raises(ValueError, match="use 'standing'"):
        LocalWorkerPool(db, {"E1_BNL": 1}, runner="threads")
    pool = LocalWorkerPool(db, {"E1_BNL": 1})
    try:
        with pytest.raises(ValueError, match="unknown site 'CERN'"):
            pool.submit(JobSpec("reco", "CERN", "x", [], [], "y"), lambda r: None)
    finally:
        pool.shutdown()


def test_a_job_whose_start_cannot_be_recorded_is_reported_failed_and_the_slot_goes_on(
        db, tmp_path):
    good = tmp_path / "a.reco.json"
    good.write_text('{"stf": "a.stf", "n_tf": 1, "n_hits": 2, "adc_sum": 3, '
                    '"hits_per_detector": {"ecal": 2}}')
    pool = LocalWorkerPool(db, {"E1_BNL": 1})
    broken = [True]

    def listener(jobs, at):
        if broken.pop() if broken else False:
            raise RuntimeError("store unreachable")

    pool.add_start_listener(listener)
    try:
        failed = run_job(pool, merge_spec(tmp_path, good))
        assert failed.status is JobStatus.FAILED
        assert failed.error == "the worker pool could not run it: store unreachable"
        assert pool.backlog("E1_BNL") == 0
        assert run_job(pool, merge_spec(tmp_path, good)).status is JobStatus.FINISHED
    finally:
        pool.shutdown()
