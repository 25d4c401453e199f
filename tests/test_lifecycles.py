"""Record lifecycles (epic_wfms/lifecycle): every move the code makes is in its table, illegal
moves are refused, the generated docs are current, and the merge-kind migration keeps data.

The recorded sequences come from the database itself: SQLite triggers log every status a
row is created with and every change of it, whoever writes it (ORM, Core bulk updates,
compare-and-set), while real runs go through the embedded installation, a template runner
and an agent process.
"""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import select, text, update

from epic_wfms.cli.main import cli
from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.errors import IllegalTransitionError
from epic_wfms.fastpath.results import wait_fastpath_drained
from epic_wfms.lifecycle import LIFECYCLES, Lifecycle
from epic_wfms.lifecycle.docs import lifecycles_markdown
from epic_wfms.lifecycle.job import JobStatus
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.lifecycle.stf import PROCESSING, ProcessingStatus, RejectionKind
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.model.stf import SuperTimeFrame
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.writes import Operations
from epic_wfms.store.database import Database
from epic_wfms.store.migrate import alembic_config
from epic_wfms.store.runs import ensure_run, get_run
from epic_wfms.store.schema import JobRecord, StfRecord, utcnow
from epic_wfms.streaming.ingest import validate_against_daq
from tests.conftest import StreamingRig, private_postgres_schema, wait_for

REPO = Path(__file__).resolve().parents[1]
P = ProcessingStatus
OPERATOR = Principal("shifter", frozenset({"operator"}))


# -- the tables themselves ------------------------------------------------------------------------
@pytest.mark.parametrize("lifecycle", LIFECYCLES, ids=lambda lc: lc.column)
def test_every_state_is_reachable_from_creation(lifecycle: Lifecycle):
    reached, frontier = set(lifecycle.initial), set(lifecycle.initial)
    while frontier:
        frontier = {t for s in frontier for t in lifecycle.states if lifecycle.allowed(s, t)}
        frontier -= reached
        reached |= frontier
    assert reached == set(lifecycle.states)


@pytest.mark.parametrize("lifecycle", LIFECYCLES, ids=lambda lc: lc.column)
def test_check_allows_exactly_the_table(lifecycle: Lifecycle):
    pairs = {(s, m.target) for m in lifecycle.moves for s in m.sources}
    for source, target in itertools.product(lifecycle.states, repeat=2):
        if (source, target) in pairs:
            assert lifecycle.check(source, target) is target
        else:
            with pytest.raises(IllegalTransitionError, match="is not an allowed move"):
                lifecycle.check(source, target)
    for target in lifecycle.states:
        assert lifecycle.allowed(None, target) == (target in lifecycle.initial)
    assert not lifecycle.allowed("no-such-state", next(iter(lifecycle.states)))


def test_an_illegal_move_says_what_is_legal():
    with pytest.raises(IllegalTransitionError) as refused:
        PROCESSING.check(P.MERGED, P.QUEUED, "swf.000001.000002.stf")
    message = str(refused.value)
    assert "STF processing of swf.000001.000002.stf: merged -> queued" in message
    assert "from merged the moves are to nothing (final)" in message
    assert "docs/lifecycles.md" in message
    with pytest.raises(IllegalTransitionError, match="from running the moves are to failed, "
                                                     "processed, retrying"):
        PROCESSING.check(P.RUNNING, P.QUEUED)


def test_a_compare_and_set_leaves_rows_in_other_states_alone(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    ensure_run(db, 1)
    with db.session() as session:
        for sequence, status in enumerate((P.FAILED, P.MERGED, P.RUNNING)):
            session.add(StfRecord(
                filename=naming.stf_filename(1, sequence), run_number=1, sequence=sequence,
                first_tf_time=utcnow(), last_tf_time=utcnow(), tf_count=1, size_bytes=1,
                adler32="00000001", state="run", substate="physics", available_at=utcnow(),
                validation="ok", processing_status=status))
    with db.session() as session:  # the monitor's retry: failed -> queued, nothing else
        moved = session.execute(update(StfRecord).where(
            PROCESSING.where(StfRecord.processing_status, P.QUEUED, [P.FAILED]),
        ).values(processing_status=P.QUEUED))
        assert moved.rowcount == 1
        statuses = list(session.scalars(select(StfRecord.processing_status)
                                        .order_by(StfRecord.sequence)))
    assert statuses == [P.QUEUED, P.MERGED, P.RUNNING]
    with pytest.raises(IllegalTransitionError, match="merged -> queued"):
        PROCESSING.where(StfRecord.processing_status, P.QUEUED, [P.MERGED])
    db.dispose()


def test_a_run_never_moves_backwards(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite'}")
    db.create_schema()
    ensure_run(db, 7, status=RunStatus.CLOSED)  # end_run (or beam loss) seen first
    ensure_run(db, 7, status=RunStatus.OPEN, detector_config="late")  # a late start_run
    run = get_run(db, 7)
    assert (run.status, run.detector_config) == (RunStatus.CLOSED, "late")
    ensure_run(db, 7, status=RunStatus.FINISHED)
    ensure_run(db, 7, status=RunStatus.CLOSED)
    assert get_run(db, 7).status == RunStatus.FINISHED
    db.dispose()


def test_docs_are_generated_from_the_tables():
    doc = (REPO / "docs" / "lifecycles.md").read_text()
    assert doc == lifecycles_markdown(), "regenerate: epic-wfms lifecycles > docs/lifecycles.md"
    printed = CliRunner().invoke(cli, ["lifecycles"])
    assert printed.exit_code == 0 and printed.output == doc


def test_rejection_kinds_come_from_the_check_that_failed(tmp_path):
    path = tmp_path / naming.stf_filename(1, 0)
    path.write_bytes(b"super time frame")
    good = SuperTimeFrame(
        run_number=1, sequence=0, filename=path.name, first_tf_time=utcnow(),
        last_tf_time=utcnow(), tf_count=1, size_bytes=path.stat().st_size,
        adler32=file_adler32(path), state="run", substate="physics")
    assert validate_against_daq(good, path) is None
    cases = [
        (good, tmp_path / "absent.stf", RejectionKind.UNREADABLE, "not readable"),
        (good.model_copy(update={"size_bytes": 3}), path, RejectionKind.SIZE_MISMATCH,
         "DAQ says 3 B"),
        (good.model_copy(update={"adler32": "00000001"}), path,
         RejectionKind.CHECKSUM_MISMATCH, "DAQ says ad:00000001"),
    ]
    for stf, where, kind, detail in cases:
        rejection = validate_against_daq(stf, where)
        assert rejection.kind is kind and detail in rejection.problem


# -- every move the code makes is in the table --------------------------------------------------
TRACE = "lifecycle_trace"


def install_trace(db: Database) -> None:
    """SQLite triggers that log each lifecycle column's first value and every change."""
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {TRACE} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "col TEXT, row_id INTEGER, old TEXT, new TEXT)")
        for lc in LIFECYCLES:
            table, column = lc.column.split(".")
            log = (f"INSERT INTO {TRACE} (col, row_id, old, new) VALUES ('{lc.column}', "
                   f"NEW.rowid, {{old}}, NEW.{column});")
            connection.exec_driver_sql(
                f"CREATE TRIGGER trace_{table}_{column}_new AFTER INSERT ON {table} "
                f"BEGIN {log.format(old='NULL')} END")
            connection.exec_driver_sql(
                f"CREATE TRIGGER trace_{table}_{column}_move AFTER UPDATE OF {column} ON {table} "
                f"WHEN OLD.{column} IS NOT NEW.{column} "
                f"BEGIN {log.format(old=f'OLD.{column}')} END")


def traced(db: Database) -> dict[str, set[tuple[str | None, str]]]:
    """Every (old, new) status each lifecycle column went through (old None: created)."""
    with db.engine.connect() as connection:
        rows = connection.execute(text(f"SELECT col, old, new FROM {TRACE} ORDER BY id")).all()
    moves: dict[str, set[tuple[str | None, str]]] = {lc.column: set() for lc in LIFECYCLES}
    for column, old, new in rows:
        moves[column].add((old, new))
    return moves


def assert_all_legal(moves: dict[str, set[tuple[str | None, str]]]) -> None:
    illegal = [f"{lc.column}: {old or '(new)'} -> {new}" for lc in LIFECYCLES
               for old, new in sorted(moves[lc.column], key=str)
               if not lc.allowed(old, new)]
    assert illegal == []


@pytest.fixture
def traced_store(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path / 'wfms' / 'bookkeeping.sqlite'}"
    db = Database(url)
    db.create_schema()
    install_trace(db)
    yield url, db
    db.dispose()


def test_a_streaming_run_moves_every_record_only_as_its_table_says(tmp_path, traced_store):
    """One run with what moves records off the happy path: an STF outside the run, a corrupt
    STF, standby, reco failures (retried, and retried until failed), an operator's kill of a
    queued job and retry of a failed one, and the fast path's slices and workers."""
    url, db = traced_store
    config = load_config(
        data_dir=tmp_path / "wfms", database_url=url,
        processing={"merge_every": 2, "missing_grace_s": 2.0,
                    "retry": {"max_attempts": 2, "backoff_s": 0.05}},
        fastpath={"pool": {"min": 1, "target": 1, "max": 1}, "drain_grace_s": 0.2},
    )
    config.fault_injection.reco_failures.update({1: 1, 4: 99})
    settings = DaqSettings(stf_size_bytes=8 * 1024, tfs_per_stf=20, rate_hz=0,
                           tf_sample_size=5, corrupt_sequences={2})
    inst = StreamingRig(config, settings)
    try:
        run = 51
        pool = inst.executor
        pool.set_online("E1_JLAB", False)  # its jobs stay activated: one is killed there
        inst.daq.bring_up()
        inst.daq.stream_outside_run(1)
        inst.daq.physics_run(run, 9, standby=range(6, 8))
        assert wait_for(lambda: _jobs(db, site="E1_JLAB", status=JobStatus.ACTIVATED))
        operations = Operations(config, db, inst.bus)
        queued = _jobs(db, site="E1_JLAB", status=JobStatus.ACTIVATED)[0]
        operations.kill_job(OPERATOR, queued.id, "lifecycle test")
        pool.set_online("E1_JLAB", True)
        assert inst.orchestrator.wait_run_finished(run, 90)
        failed = naming.stf_filename(run, 4)
        assert _stf(db, failed).processing_status == P.FAILED
        config.fault_injection.reco_failures.pop(4)
        operations.retry_job(OPERATOR, _jobs(db, stf=failed)[-1].id)
        assert wait_for(lambda: _stf(db, failed).processing_status == P.PROCESSED)
        assert wait_fastpath_drained(db, run, 60)
    finally:
        inst.close()
    moves = traced(db)
    assert_all_legal(moves)
    # the run went off the happy path where intended (the test is not vacuous)
    expected = {
        "stfs.processing_status": {
            (None, "not_required"), (None, "rejected"), (None, "deferred"),
            ("deferred", "activated"), ("activated", "running"), ("running", "retrying"),
            ("activated", "retrying"), ("retrying", "running"), ("running", "failed"),
            ("failed", "queued"), ("running", "processed"), ("processed", "merged")},
        "stfs.archive_status": {(None, "pending"), (None, "not_archived"),
                                ("pending", "archived")},
        "jobs.status": {(None, "activated"), ("activated", "running"),
                        ("activated", "cancelled"), ("running", "finished"),
                        ("running", "failed")},
        "merges.status": {(None, "running"), ("running", "done")},
        "runs.status": {(None, "announced"), ("announced", "open"), ("open", "closed"),
                        ("closed", "finished")},
        "tf_slices.status": {(None, "queued"), ("queued", "processing"),
                             ("processing", "completed")},
        "fastpath_workers.status": {(None, "registered"), ("registered", "exited")},
    }
    for column, pairs in expected.items():
        assert pairs <= moves[column], (column, pairs - moves[column])


def test_template_runs_move_their_records_only_as_the_table_says(tmp_path, traced_store):
    _url, db = traced_store
    data = ["--data-dir", str(tmp_path / "wfms")]
    runner = CliRunner()
    ran = runner.invoke(cli, ["template", "submit", "streaming_reco", "--run", "3",
                              "--toy-inputs", "--json", *data])
    assert ran.exit_code == 0, ran.output
    dry = runner.invoke(cli, ["template", "submit", "fast_monitoring", "--run", "3",
                              "--target", "panda", "--dry-run", "--json", *data])
    assert dry.exit_code == 0, dry.output
    moves = traced(db)
    assert_all_legal(moves)
    assert {(None, "running"), ("running", "finished"), (None, "dry-run")} <= moves[
        "template_submissions.status"]
    assert {(None, "running"), ("running", "finished")} <= moves["template_step_runs.status"]


def test_an_agent_moves_its_record_only_as_the_table_says(tmp_path, traced_store):
    url, db = traced_store
    config = load_config(data_dir=tmp_path / "wfms", database_url=url)
    agents = AgentSet(config, write_config(config, tmp_path / "wfms" / "agents.yaml"), db)
    try:
        agents.start_all(("archive",))
        agents.kill("archive", signal.SIGTERM)
    finally:
        agents.stop_all()
    moves = traced(db)
    assert_all_legal(moves)
    assert moves["agents.status"] == {(None, "running"), ("running", "stopped")}


# -- the gather is a merge kind, not a site: migration 0010 keeps existing data ---------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_merge_kind_migration_keeps_merges_and_their_stfs(tmp_path, backend):
    if backend == "sqlite":
        _migrate_with_data(f"sqlite:///{tmp_path / 'store.sqlite'}")
    else:
        with private_postgres_schema() as url:
            _migrate_with_data(url)


def _migrate_with_data(url: str) -> None:
    db = Database(url)
    config = alembic_config(db.engine.url.render_as_string(hide_password=False))

    def migrate(step, revision: str) -> None:
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)

    migrate(command.upgrade, "0009")
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO runs (number, run_type, detector_config, status, announced_at) "
            "VALUES (1, 'physics', 'x', 'finished', :at)"), {"at": utcnow()})
        connection.execute(text(
            "INSERT INTO merges (id, run_number, site, merge_index, output, n_inputs, final, "
            "status, created_at) VALUES (1, 1, 'E1_BNL', 0, 'm', 1, :no, 'done', :at), "
            "(2, 1, 'RUN', 0, 'g', 1, :yes, 'done', :at)"), {"at": utcnow(), "no": False,
                                                             "yes": True})
        connection.execute(text(
            "INSERT INTO stfs (id, filename, run_number, sequence, first_tf_time, "
            "last_tf_time, tf_count, size_bytes, adler32, state, substate, daq_metadata, "
            "available_at, received_at, validation, archive_status, processing_status, "
            "merge_id) VALUES (1, 'swf.000001.000000.stf', 1, 0, :at, :at, 1, 1, '00000001', "
            "'run', 'physics', '{}', :at, :at, 'ok', 'archived', 'merged', 1)"), {"at": utcnow()})
    migrate(command.upgrade, "head")
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT id, kind, site FROM merges ORDER BY id")).all() \
            == [(1, "partial", "E1_BNL"), (2, "gather", None)]
        assert connection.execute(text("SELECT merge_id FROM stfs")).all() == [(1,)]
    migrate(command.downgrade, "0009")
    with db.engine.connect() as connection:
        assert connection.execute(text("SELECT id, final, site FROM merges ORDER BY id")).all() \
            == [(1, False, "E1_BNL"), (2, True, "RUN")]
        assert connection.execute(text("SELECT merge_id FROM stfs")).all() == [(1,)]
    db.dispose()


# -- helpers ----------------------------------------------------------------------------------
def _jobs(db: Database, site: str | None = None, status: str | None = None,
          stf: str | None = None) -> list[JobRecord]:
    query = select(JobRecord).order_by(JobRecord.id)
    for column, value in ((JobRecord.site, site), (JobRecord.status, status),
                          (JobRecord.stf_filename, stf)):
        if value is not None:
            query = query.where(column == value)
    with db.session() as session:
        return list(session.scalars(query))


def _stf(db: Database, filename: str) -> StfRecord:
    with db.session() as session:
        return session.scalar(select(StfRecord).where(StfRecord.filename == filename))
