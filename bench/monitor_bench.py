"""Monitor benchmark: page and API latencies with a large synthetic history on PostgreSQL.

    make bench            (or: .venv/bin/python bench/monitor_bench.py --help)

A private PostgreSQL schema is filled server-side (generate_series) with ``--runs`` runs of
``--stfs`` STFs each, one reco job and one provenance edge per STF, state transitions, gate
events and integrity issues; the newest run is still open with STFs in flight. Each page and
API endpoint is then requested ``--repeat`` times in-process (FastAPI/ASGI, rendering
included) and its median and p95 latency printed. Baselines in the same run, same data:
  status     ``epic-wfms status`` (cli/status.py): aggregates over the whole history
  no-index   the current-state pages again with the monitor's indexes (migration 0005) dropped
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import text

from epic_wfms.cli.status import store_status
from epic_wfms.config import POSTGRES_DEFAULT_URL, load_config
from epic_wfms.monitor.server import background_monitor
from epic_wfms.store.database import Database
from epic_wfms.store.scratch import scratch_schema

MONITOR_INDEXES = [
    ("ix_stf_processed_at", "stfs (processed_at)"),
    ("ix_stf_processing_site", "stfs (processing_status, site)"),
    ("ix_stf_received_at", "stfs (received_at)"),
    ("ix_stf_run_archive", "stfs (run_number, archive_status)"),
    ("ix_jobs_site_status", "jobs (site, status)"),
    ("ix_jobs_run_kind", "jobs (run_number, kind)"),
    ("ix_jobs_ended_at", "jobs (ended_at)"),
    ("ix_issues_open", "integrity_issues (resolved_at, run_number)"),
    ("ix_transitions_run", "state_transitions (run_number)"),
    ("ix_gate_events_run", "gate_events (run_number)"),
    ("ix_runs_status", "runs (status)"),
]

FILL = [  # :runs, :stfs; run i starts (runs - i) * 4 h ago; STFs every 0.5 s
    """INSERT INTO runs (number, run_type, detector_config, status, announced_at, start_time,
         end_time, target_stfs, total_stfs, merged_output, finished_at)
       SELECT 100000 + i, 'physics', 'epic-default',
              CASE WHEN i = :runs THEN 'open' ELSE 'finished' END,
              now() - (:runs - i) * interval '4 hours', now() - (:runs - i) * interval '4 hours',
              CASE WHEN i = :runs THEN NULL ELSE now() - (:runs - i) * interval '4 hours'
                   + :stfs * interval '500 milliseconds' END, :stfs, :stfs,
              'swf.' || lpad((100000 + i)::text, 6, '0') || '.run.merged.json', NULL
       FROM generate_series(1, :runs) AS i""",
    """INSERT INTO stfs (filename, run_number, sequence, first_tf_time, last_tf_time, tf_count,
         size_bytes, adler32, state, substate, daq_metadata, available_at, received_at,
         validation, registered_at, archive_status, archived_at, processing_status, site,
         dispatched_at, processed_at, reco_output, merge_id)
       SELECT 'swf.' || lpad((100000 + i)::text, 6, '0') || '.' || lpad(s::text, 6, '0')
                || '.stf', 100000 + i, s, t, t, 100, 1000000000, '00000001', 'run', 'physics',
              '{}', t, t + interval '50 ms', 'ok', t + interval '80 ms',
              CASE WHEN i = :runs AND s > :stfs - 40 THEN 'pending' ELSE 'archived' END,
              CASE WHEN i = :runs AND s > :stfs - 40 THEN NULL ELSE t + interval '2 s' END,
              CASE WHEN i = :runs AND s > :stfs - 20 THEN 'queued'
                   WHEN i = :runs AND s > :stfs - 30 THEN 'running'
                   WHEN s % 997 = 13 THEN 'failed' ELSE 'processed' END,
              CASE WHEN s % 2 = 0 THEN 'E1_BNL' ELSE 'E1_JLAB' END,
              CASE WHEN i = :runs AND s > :stfs - 20 THEN NULL ELSE t + interval '150 ms' END,
              CASE WHEN (i = :runs AND s > :stfs - 30) OR s % 997 = 13 THEN NULL
                   ELSE t + interval '900 ms' END,
              NULL, NULL
       FROM generate_series(1, :runs) AS i, generate_series(0, :stfs - 1) AS s,
            LATERAL (SELECT now() - (:runs - i) * interval '4 hours'
                            + s * interval '500 ms' AS t) AS times""",
    """INSERT INTO jobs (kind, site, status, attempt_nr, max_attempts, run_number, stf_filename,
         output, command, error, exit_code, created_at, activated_at, started_at, ended_at)
       SELECT 'reco', site, CASE WHEN processing_status = 'failed' THEN 'failed'
                                 WHEN processing_status = 'running' THEN 'running'
                                 ELSE 'finished' END, 1, 3, run_number, filename,
              replace(filename, '.stf', '.reco.json'), 'python -m reco',
              CASE WHEN processing_status = 'failed' THEN 'payload exceeded 600s' END,
              CASE WHEN processing_status = 'failed' THEN 1 ELSE 0 END,
              available_at, available_at, dispatched_at,
              CASE WHEN processing_status IN ('processed', 'failed') THEN processed_at END
       FROM stfs WHERE processing_status <> 'queued'""",
    """UPDATE jobs SET ended_at = started_at + interval '750 ms'
       WHERE status = 'failed'""",
    """INSERT INTO provenance (job_id, input_name, output_name)
       SELECT id, stf_filename, output FROM jobs WHERE status = 'finished'""",
    """INSERT INTO state_transitions (occurred_at, trigger, from_state, from_substate, to_state,
         to_substate, flavour, effect, run_number, reason)
       SELECT r.start_time + k * interval '1 s', tr.trigger, tr.fs, tr.fss, tr.ts, tr.tss, 'epic',
              'none', r.number, 'synthetic'
       FROM runs r, (VALUES (0, 'run_imminent', 'beam', 'ready', 'beam', 'ready'),
                            (1, 'start_run', 'beam', 'ready', 'run', 'physics'),
                            (2, 'end_run', 'run', 'physics', 'beam', 'ready'))
                     AS tr(k, trigger, fs, fss, ts, tss)
       WHERE NOT (r.status = 'open' AND tr.trigger = 'end_run')""",
    """INSERT INTO gate_events (run_number, action, reason, backlog, occurred_at)
       SELECT number, 'suspended', 'standby', 3, start_time FROM runs WHERE number % 10 = 0""",
    """INSERT INTO integrity_issues (kind, run_number, filename, detail, detected_at,
         resolved_at)
       SELECT 'processing_failed', run_number, filename, 'reco failed 3 times', archived_at,
              CASE WHEN run_number % 3 = 0 THEN now() END
       FROM stfs WHERE processing_status = 'failed'""",
]


def fill(db: Database, runs: int, stfs: int) -> dict[str, int]:
    """Plain indexes are dropped while filling and built again after (much faster)."""
    with db.engine.begin() as connection:
        indexes = connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)")).all()
        for name, _ in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
        for statement in FILL:
            connection.execute(text(statement), {"runs": runs, "stfs": stfs})
        for _, definition in indexes:
            connection.execute(text(definition))
        connection.execute(text("ANALYZE"))
        return {table: connection.scalar(text(f"SELECT count(*) FROM {table}"))
                for table in ("runs", "stfs", "jobs", "provenance", "state_transitions")}


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    call()  # warm caches and connection pools
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def endpoints(run: int, stfs: int) -> list[str]:
    stf = f"swf.{run - 1:06d}.{stfs // 2:06d}.stf"
    return ["/", "/?json", "/state", f"/runs/{run}", "/runs", "/sites", "/issues",
            "/api/v1/dashboard", "/api/v1/state/history", f"/api/v1/runs/{run}",
            f"/api/v1/stfs?run={run}&limit=100", "/api/v1/jobs?status=failed&limit=50",
            f"/api/v1/stfs/{stf}", f"/api/v1/files/{stf}/provenance", "/api/v1/sites",
            "/api/v1/summary", "/metrics"]


def measure(client: httpx.Client, paths: list[str], repeat: int) -> dict[str, tuple[float, float]]:
    out = {}
    for path in paths:
        def get(path: str = path) -> None:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
        out[path] = timed(get, repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs of history")
    parser.add_argument("--stfs", type=int, default=1000, help="STFs per run")
    parser.add_argument("--repeat", type=int, default=20, help="requests per endpoint")
    parser.add_argument("--postgres", default=POSTGRES_DEFAULT_URL)
    args = parser.parse_args()
    with scratch_schema(args.postgres, "bench_monitor") as url, \
            tempfile.TemporaryDirectory() as tmp:
        db = Database(url)
        db.create_schema()
        started = time.perf_counter()
        sizes = fill(db, args.runs, args.stfs)
        print(f"history: {', '.join(f'{n:,} {t}' for t, n in sizes.items())} "
              f"(filled in {time.perf_counter() - started:.0f} s; ~{args.runs * 4 / 24:.0f} days "
              f"of 4-h runs)")
        config = load_config(data_dir=Path(tmp), database_url=url, monitor={"port": 0})
        current = 100000 + args.runs
        with background_monitor(config, db) as base, \
                httpx.Client(base_url=base, timeout=60) as client:
            indexed = measure(client, endpoints(current, args.stfs), args.repeat)
            status_ms = timed(lambda: store_status(db), max(3, args.repeat // 4))
            with db.engine.begin() as connection:
                for name, _ in MONITOR_INDEXES:
                    connection.execute(text(f"DROP INDEX {name}"))
                connection.execute(text("ANALYZE"))
            bare = measure(client, ["/", "/api/v1/dashboard", "/api/v1/sites", "/api/v1/summary",
                                    "/metrics"], max(3, args.repeat // 4))
            with db.engine.begin() as connection:
                for name, columns in MONITOR_INDEXES:
                    table, cols = columns.split(" ", 1)
                    connection.execute(text(f"CREATE INDEX {name} ON {table} {cols}"))
        db.dispose()
    print(f"\n{'endpoint':52} {'p50 ms':>9} {'p95 ms':>9} {'no-index p50':>13}")
    for path, (p50, p95) in indexed.items():
        base = f"{bare[path][0]:13.1f}" if path in bare else ""
        print(f"{path:52} {p50:9.1f} {p95:9.1f} {base}")
    print(f"{'baseline: epic-wfms status (whole-history aggregates)':52} "
          f"{status_ms[0]:9.1f} {status_ms[1]:9.1f}")
    slow = [p for p, (p50, _) in indexed.items() if p50 > 200]
    print("\ncurrent-state pages under 200 ms: " + ("yes" if not slow else f"no: {slow}"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"(HTTP through uvicorn on loopback; machine load average {load} "
          f"on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
