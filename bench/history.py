"""A synthetic operational history on PostgreSQL, filled server-side (generate_series), for the
monitor's benchmark (a year and more) and its browser tests (a few hundred runs).

``runs`` runs of ``stfs`` STFs each, run i starting (runs - i) * 4 h ago, STFs every 0.5 s;
the newest run still open with STFs in flight. Per STF: one reco job, one provenance edge,
one PanDA job of its site's prompt task and the resource usage of its job. Per run: three
PanDA tasks (prompt at each E1, merge), state transitions, a template submission of a
production campaign (steps and step runs, usage, two PanDA tasks with jobs), brokerage
decisions over the catalogue's sites, fast-path slices, workers, scaling, histograms and an
alarm. Plain indexes are dropped while filling and built again after (much faster).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from epic_wfms.store.database import Database

SITES = ("E1_BNL", "E1_JLAB", "E2_ANL", "E2_BRISTOL_ARM", "E2_CCIN2P3", "E2_CLOUD_GCP",
         "E2_CNAF", "E2_DRAC", "E2_GLASGOW", "E2_GSI", "E2_IJCLAB", "E2_KISTI", "E2_MIT",
         "E2_NERSC", "E2_OLCF", "E2_OSG", "E2_RAL", "E2_SBU", "E2_UNAM")
TEMPLATES = ("simulation_campaign", "first_pass_reco", "reprocessing", "user_analysis",
             "calibration")
SITE_ARRAY = "ARRAY[" + ", ".join(f"'{s}'" for s in SITES) + "]"
TEMPLATE_ARRAY = "ARRAY[" + ", ".join(f"'{t}'" for t in TEMPLATES) + "]"
RUN0 = 100000
TASK0 = 10_000_000  # jediTaskIDs of the prompt/merge tasks: TASK0 + 3 * i + k
PANDA0 = 100_000_000

STREAMING = [  # :runs, :stfs
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
    """INSERT INTO resource_usage (job_ref, workflow, username, site, queue, activity, status,
         cores, gpus, started_at, ended_at, core_seconds, gpu_seconds)
       SELECT 'job:' || id, 'streaming_' || kind, 'epic-streaming', site, site, 'streaming',
              status, 1, 0, started_at, ended_at,
              extract(epoch FROM ended_at - started_at), 0
       FROM jobs WHERE ended_at IS NOT NULL AND started_at IS NOT NULL""",
]

WORKLOAD = [  # PanDA tasks and jobs, template submissions, campaigns
    f"""INSERT INTO panda_tasks (jedi_task_id, server, task_name, kind, run_number, site,
         input_dataset, status, priority, error, params, submitted_at, updated_at, username,
         campaign, submission_id)
       SELECT {TASK0} + 3 * i + k, 'https://pandaserver.example/server/panda',
              'epic.swf.' || (100000 + i) || CASE k WHEN 2 THEN '.merge' ELSE '.prompt.'
                || (ARRAY['E1_BNL', 'E1_JLAB'])[k + 1] END,
              CASE k WHEN 2 THEN 'merge' ELSE 'prompt' END, 100000 + i,
              (ARRAY['E1_BNL', 'E1_JLAB', 'E1_BNL'])[k + 1],
              'epic:swf.' || (100000 + i) || '.' || (ARRAY['E1_BNL', 'E1_JLAB', 'run'])[k + 1],
              CASE WHEN i = :runs THEN 'running' ELSE 'done' END, 900, NULL, '{{}}',
              now() - (:runs - i) * interval '4 hours',
              now() - (:runs - i) * interval '4 hours' + interval '1 hour', 'epicprod',
              'streaming', NULL
       FROM generate_series(1, :runs) AS i, generate_series(0, 2) AS k""",
    f"""INSERT INTO panda_jobs (panda_id, jedi_task_id, status, site, attempt_nr, input_files,
         stf_filename, error, updated_at)
       SELECT {PANDA0} + id, {TASK0} + 3 * (run_number - {RUN0})
                + CASE WHEN site = 'E1_BNL' THEN 0 ELSE 1 END,
              CASE processing_status WHEN 'processed' THEN 'finished'
                   WHEN 'failed' THEN 'failed' WHEN 'running' THEN 'running'
                   ELSE 'activated' END, site || '_STREAMING',
              CASE WHEN processing_status = 'failed' THEN 3 ELSE 1 END,
              json_build_array(filename), filename,
              CASE WHEN processing_status = 'failed'
                   THEN 'pilotErrorDiag: payload exceeded the walltime' END,
              coalesce(processed_at, available_at)
       FROM stfs""",
    f"""INSERT INTO template_submissions (id, template, template_version, template_hash,
         rendered_hash, target, dry_run, campaign, activity, parameters, rendered, status,
         runtime, error, created_at, finished_at, username, priority)
       SELECT i, t, '1.0.0', md5(t), md5(i::text), CASE WHEN i % 2 = 0 THEN 'panda'
              ELSE 'local' END, false, 'epic-' || to_char(at, 'YY.MM'),
              CASE WHEN t = 'user_analysis' THEN 'analysis' ELSE 'production' END,
              json_build_object('events', 1000 * i),
              json_build_object('use_case', t, 'tags', json_build_object(
                'p', json_build_object('tag', 'p' || (1000 + i % 7), 'content_hash', md5(t)),
                'r', json_build_object('tag', 'r' || (1000 + i % 3), 'content_hash', md5(t)))),
              CASE WHEN i = :runs THEN 'running' WHEN i % 11 = 0 THEN 'failed'
                   ELSE 'finished' END, 'host', CASE WHEN i % 11 = 0 THEN 'npsim: exit 1' END,
              at, CASE WHEN i = :runs THEN NULL ELSE at + interval '3 hours' END,
              'user' || lpad((i % 20)::text, 2, '0'), 500 + i % 5 * 100
       FROM generate_series(1, :runs) AS i,
            LATERAL (SELECT ({TEMPLATE_ARRAY})[1 + i % 5] AS t,
                            now() - (:runs - i) * interval '4 hours' AS at) AS x""",
    """INSERT INTO template_step_runs (submission_id, step, iteration, job_index, attempt,
         status, command, exit_code, runtime, outputs, message, started_at, ended_at)
       SELECT s.id, (ARRAY['evgen', 'npsim', 'merge_background', 'eicrecon'])[1 + k / 10],
              1, k % 10, CASE WHEN k % 10 = 3 THEN 2 ELSE 1 END,
              CASE WHEN s.status = 'failed' AND k = 15 THEN 'failed' ELSE 'finished' END,
              'run.sh', CASE WHEN s.status = 'failed' AND k = 15 THEN 1 ELSE 0 END, 'host',
              '{"files": []}', CASE WHEN s.status = 'failed' AND k = 15
                                    THEN 'exit code 1' END,
              s.created_at + k * interval '4 min', s.created_at + k * interval '4 min'
                + interval '3 min'
       FROM template_submissions s, generate_series(0, 39) AS k""",
    f"""INSERT INTO resource_usage (job_ref, workflow, username, site, queue, activity,
         status, cores, gpus, started_at, ended_at, core_seconds, gpu_seconds)
       SELECT 'step:' || r.id, s.template, s.username, ({SITE_ARRAY})[1 + r.id % 19],
              'PROD', CASE s.template WHEN 'simulation_campaign' THEN 'simulation'
                WHEN 'user_analysis' THEN 'analysis' WHEN 'calibration' THEN 'calibration'
                ELSE 'reconstruction' END, r.status, 8, 0, r.started_at, r.ended_at, 8 * 180, 0
       FROM template_step_runs r JOIN template_submissions s ON s.id = r.submission_id""",
    f"""INSERT INTO panda_tasks (jedi_task_id, server, task_name, kind, run_number, site,
         input_dataset, status, priority, error, params, submitted_at, updated_at, username,
         campaign, submission_id)
       SELECT {TASK0 // 2} + 2 * s.id + k, 'https://pandaserver.example/server/panda',
              s.campaign || '.' || s.template || '.' || s.id || '.' || k, 'production', NULL,
              ({SITE_ARRAY})[1 + (s.id + k) % 19], NULL,
              CASE WHEN s.status = 'running' THEN 'running' WHEN s.status = 'failed' AND k = 1
                   THEN 'failed' ELSE 'done' END, s.priority, NULL, '{{}}', s.created_at,
              s.created_at + interval '3 hours', s.username, s.campaign, s.id
       FROM template_submissions s, generate_series(0, 1) AS k WHERE s.target = 'panda'""",
    f"""INSERT INTO panda_jobs (panda_id, jedi_task_id, status, site, attempt_nr, input_files,
         stf_filename, error, updated_at)
       SELECT {PANDA0 // 2} + 10 * (t.jedi_task_id - {TASK0 // 2}) + j, t.jedi_task_id,
              CASE WHEN t.status = 'failed' AND j < 3 THEN 'failed' ELSE 'finished' END,
              t.site, 1 + j % 2, '[]', NULL,
              CASE WHEN t.status = 'failed' AND j < 3 THEN 'exeErrorDiag: exit 65' END,
              t.updated_at
       FROM panda_tasks t, generate_series(0, 9) AS j WHERE t.kind = 'production'""",
]

USAGE_HOURLY = [  # what accounting.insert_usage keeps beside the jobs' usage
    """INSERT INTO resource_usage_hourly (hour, site, queue, activity, workflow, username,
         status, core_seconds, gpu_seconds, jobs)
       SELECT date_trunc('hour', ended_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', site, queue,
              activity, workflow, username, status, sum(core_seconds), sum(gpu_seconds),
              count(*)
       FROM resource_usage GROUP BY 1, 2, 3, 4, 5, 6, 7""",
]

FABRIC = [  # :decisions per run; brokerage over the catalogue's sites
    f"""INSERT INTO brokerage_decisions (job_ref, workflow, username, activity, lane, outcome,
         site, queue, score, reasons, decided_at)
       SELECT 'task' || i || '.job' || j, ({TEMPLATE_ARRAY})[1 + i % 5],
              'user' || lpad((i % 20)::text, 2, '0'), 'simulation',
              CASE WHEN j % 50 = 0 THEN 'express' ELSE 'normal' END,
              CASE WHEN j % 97 = 5 THEN 'deferred' ELSE 'assigned' END,
              ({SITE_ARRAY})[1 + (i + j) % 19], 'PROD', 0.4 + (j % 50) / 100.0,
              json_build_object('components', json_build_object('locality', 0.8,
                'free_capacity', (j % 10) / 10.0, 'share', 0.5),
                'runner_up', json_build_object('queue', 'OTHER', 'score', 0.3)),
              now() - (:runs - i) * interval '4 hours' + j * interval '10 s'
       FROM generate_series(1, :runs) AS i, generate_series(1, :decisions) AS j""",
]

FASTPATH = [  # :slices per run
    """INSERT INTO tf_slices (name, run_number, stf_filename, sample_filename, path, first_tf,
         tf_count, kind, express, status, attempts, worker, available_at, queued_at,
         started_at, completed_at, processing_s, n_events, error, summary)
       SELECT 'swf.' || (100000 + i) || '.slice.' || k, 100000 + i,
              'swf.' || lpad((100000 + i)::text, 6, '0') || '.' || lpad((k * 5)::text, 6, '0')
                || '.stf', 'tf.sample', '/data/slices', 0, 5,
              CASE WHEN k % 10 = 0 THEN 'detector_status' ELSE 'monitoring' END, k % 10 = 0,
              CASE WHEN i = :runs AND k > :slices - 5 THEN 'queued' ELSE 'completed' END,
              1 + (k % 23 = 0)::int, 'fp-' || i || '-' || k % 3, at, at,
              at + interval '50 ms',
              CASE WHEN i = :runs AND k > :slices - 5 THEN NULL
                   ELSE at + (300 + k % 700) * interval '1 ms' END, 0.2, 5, NULL, '{}'
       FROM generate_series(1, :runs) AS i, generate_series(1, :slices) AS k,
            LATERAL (SELECT now() - (:runs - i) * interval '4 hours'
                            + k * interval '2 s' AS at) AS times""",
    """INSERT INTO fastpath_workers (name, run_number, pid, status, registered_at, ended_at,
         slices_done, detail)
       SELECT 'fp-' || i || '-' || w, 100000 + i, 1000 + w,
              CASE WHEN i = :runs THEN 'registered' ELSE 'exited' END,
              now() - (:runs - i) * interval '4 hours' + w * interval '30 s',
              CASE WHEN i = :runs THEN NULL
                   ELSE now() - (:runs - i) * interval '4 hours' + interval '3 hours' END,
              :slices / 3, NULL
       FROM generate_series(1, :runs) AS i, generate_series(0, 2) AS w""",
    """INSERT INTO fastpath_scaling (run_number, decided_at, from_size, to_size, backlog,
         slice_s, reason)
       SELECT 100000 + i, now() - (:runs - i) * interval '4 hours' + w * interval '30 s',
              w, w + 1, 10 * w, 0.4, 'backlog above target'
       FROM generate_series(1, :runs) AS i, generate_series(0, 2) AS w""",
    """INSERT INTO fastpath_histograms (run_number, name, low, high, counts, underflow,
         overflow, entries, updated_at)
       SELECT 100000 + i, h.name, 0, h.high,
              (SELECT json_agg((100 * exp(-((b - h.bins / 3.0) ^ 2) / 40))::int)
               FROM generate_series(1, h.bins) AS b), 0, 3, 1000, now()
       FROM generate_series(1, :runs) AS i,
            (VALUES ('event_hits', 200, 40), ('event_calo_energy', 6000, 60),
                    ('event_adc_mean', 65536, 64), ('event_saturated_fraction', 1, 20))
              AS h(name, high, bins)""",
    """INSERT INTO fastpath_alarms (run_number, slice_name, stf_filename, event, kind, value,
         threshold, detail, raised_at)
       SELECT 100000 + i, 'swf.' || (100000 + i) || '.slice.7', 'swf.'
                || lpad((100000 + i)::text, 6, '0') || '.000035.stf', 3, 'saturation', 0.8,
              0.5, 'synthetic', now() - (:runs - i) * interval '4 hours' + interval '1 min'
       FROM generate_series(1, :runs) AS i""",
]


def analyze(connection: Any) -> None:
    """Statistics of this schema's tables only (a bare ANALYZE takes every schema's tables of
    the shared database, and deadlocks with another session doing the same)."""
    for (table,) in connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).all():
        connection.execute(text(f'ANALYZE "{table}"'))


def fill(db: Database, runs: int, stfs: int, decisions: int = 200, slices: int = 200
         ) -> dict[str, int]:
    """Fill an empty store (migrated schema) with the history; returns the table sizes."""
    params = {"runs": runs, "stfs": stfs, "decisions": decisions, "slices": slices}
    with db.engine.begin() as connection:
        indexes = connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)")).all()
        for name, _ in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
        for statement in STREAMING + WORKLOAD + USAGE_HOURLY + FABRIC + FASTPATH:
            connection.execute(text(statement), params)
        connection.execute(text(
            "SELECT setval(pg_get_serial_sequence('template_submissions', 'id'), :n)"),
            {"n": runs})
        for _, definition in indexes:
            connection.execute(text(definition))
        analyze(connection)
        return {table: connection.scalar(text(f"SELECT count(*) FROM {table}"))
                for table in ("runs", "stfs", "jobs", "provenance", "panda_tasks", "panda_jobs",
                              "template_submissions", "template_step_runs",
                              "brokerage_decisions", "resource_usage", "resource_usage_hourly",
                              "tf_slices")}
