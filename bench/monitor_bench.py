"""Monitor benchmark: page and API latencies with a large synthetic history on PostgreSQL.

    make bench            (or: .venv/bin/python bench/monitor_bench.py --help)

For each scale (``--scales RUNSxSTFS,...``; default one year and more, 5,000 runs of 2,000
STFs = 10 M STFs) a private PostgreSQL schema is filled server-side by ``history.fill``
(streaming, PanDA tasks and jobs, template submissions, brokerage decisions, resource usage,
fast path; see bench/history.py). Every page and API endpoint, today's and the workload/fabric
ones of issue 16, is then requested ``--repeat`` times over HTTP (uvicorn on loopback,
rendering included): p50, p95 and p99 are printed side by side for every scale. Baselines in
the same run, on the largest history:
  status     ``epic-wfms status`` (cli/status.py): aggregates over the whole history
  no-index   some pages again without the monitor's indexes (migrations 0006 and 0009)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from history import PANDA0, RUN0, TASK0, analyze, fill
from sqlalchemy import text

from epic_wfms.cli.status import store_status
from epic_wfms.config import POSTGRES_DEFAULT_URL, load_config
from epic_wfms.monitor.server import background_monitor
from epic_wfms.store.database import Database
from epic_wfms.store.scratch import scratch_schema

MONITOR_INDEXES = [  # (name, table (columns)) of migrations 0006 and 0009
    ("ix_stf_processed_at", "stfs (processed_at)"),
    ("ix_stf_processing_site", "stfs (processing_status, site)"),
    ("ix_stf_received_at", "stfs (received_at)"),
    ("ix_jobs_site_status", "jobs (site, status)"),
    ("ix_jobs_ended_at", "jobs (ended_at)"),
    ("ix_panda_tasks_user", "panda_tasks (username)"),
    ("ix_panda_jobs_status", "panda_jobs (status)"),
    ("ix_decisions_time", "brokerage_decisions (decided_at)"),
    ("ix_usage_user_ended", "resource_usage (username, ended_at)"),
    ("ix_tf_slices_run_completed", "tf_slices (run_number, completed_at)"),
]
NO_INDEX_PAGES = ["/", "/api/v1/sites", "/tasks?user=user01", "/pandajobs?status=failed",
                  "/brokerage", "/users/user01"]


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def rank(q: float) -> float:  # nearest rank
        return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]
    return rank(50), rank(95), rank(99)


def timed(call: Callable[[], object], repeat: int, cpu: Callable[[], dict] | None = None
          ) -> tuple[float, ...]:
    """Wall-clock p50/p95/p99 ms; with ``cpu`` also the p50/p99 of the CPU time the request
    took (this process and the database's backends): on a shared, loaded machine the wall
    clock mostly measures the wait for a CPU, the CPU time what the page costs."""
    call()  # warm caches and connection pools
    samples, spent = [], []
    for _ in range(repeat):
        start, before = time.perf_counter(), cpu() if cpu else {}
        call()
        samples.append((time.perf_counter() - start) * 1000)
        if cpu:
            after = cpu()
            spent.append(sum(v - before.get(k, v) for k, v in after.items()) * 1000)
    wall = percentiles(samples)
    return (*wall, *percentiles(spent)[::2]) if cpu else wall


def backend_cpu(db: Database) -> Callable[[], dict]:
    """CPU seconds so far of this process ("self") and of each PostgreSQL backend serving one
    of its connections (the database runs on this machine: /proc/PID/stat); a backend that
    appears during a request (a new pooled connection) counts from then on only."""
    ticks = os.sysconf("SC_CLK_TCK")

    def backends() -> list[int]:
        """Backends of this process's own sockets to port 5432 (not the query's own)."""
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        ports = [int(fields[1].split(":")[1], 16) for fields in (
            line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
            if fields[2].endswith(":1538") and fields[9] in inodes]  # 0x1538: port 5432
        with db.engine.connect() as connection:
            return list(connection.scalars(text(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports) "
                "AND pid <> pg_backend_pid()"), {"ports": ports}))

    def snapshot() -> dict:
        out: dict = {}
        for pid in backends():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[pid] = (int(fields[11]) + int(fields[12])) / ticks
        out["self"] = time.process_time()  # last: the snapshot's own work is not counted
        return out
    return snapshot


def today(run: int, stfs: int) -> list[str]:
    stf = f"swf.{run - 1:06d}.{stfs // 2:06d}.stf"
    return ["/", "/?json", "/state", f"/runs/{run}", "/runs", "/sites", "/issues",
            "/api/v1/dashboard", "/api/v1/state/history", f"/api/v1/runs/{run}",
            f"/api/v1/stfs?run={run}&limit=100", "/api/v1/jobs?status=failed&limit=50",
            f"/api/v1/stfs/{stf}", f"/api/v1/files/{stf}/provenance", "/api/v1/sites",
            "/api/v1/summary", "/metrics"]


def new(runs: int, client: httpx.Client) -> list[str]:
    run = RUN0 + runs
    campaign = client.get("/api/v1/campaigns").json()[0]["campaign"]
    prompt = TASK0 + 3 * runs
    return ["/tasks", "/tasks?user=user01", f"/tasks/{prompt}", "/pandajobs",
            "/pandajobs?status=failed",
            f"/pandajobs/{PANDA0 + 5}", "/templates", "/templates/simulation_campaign",
            "/submissions", f"/submissions/{runs}", "/campaigns", f"/campaigns/{campaign}",
            f"/fastpath/{run}", "/brokerage", "/fabric/E1_BNL", "/resources",
            "/resources?by=user&hours=720", "/users/user01", "/api/v1/tasks",
            f"/api/v1/tasks/{prompt}", f"/api/v1/fastpath/{run}", "/api/v1/brokerage/decisions",
            "/api/v1/fabric/sites", "/api/v1/resources?by=workflow&hours=720",
            "/api/v1/users/user01"]


def measure(client: httpx.Client, paths: list[str], repeat: int,
            cpu: Callable[[], dict] | None = None) -> dict[str, tuple]:
    out = {}
    for path in paths:
        def get(path: str = path) -> None:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
        out[path] = timed(get, repeat, cpu)
        print(f"  {path[:60]:60} {'/'.join(f'{v:.0f}' for v in out[path][:3]):>16} ms"
              + (f"   cpu p50/p99 {out[path][3]:.0f}/{out[path][4]:.0f} ms" if cpu else ""),
              flush=True)
    return out


def one_scale(runs: int, stfs: int, args: argparse.Namespace, baselines: bool) -> dict:
    with scratch_schema(args.postgres, "bench_monitor") as url, \
            tempfile.TemporaryDirectory() as tmp:
        db = Database(url)
        db.create_schema()
        started = time.perf_counter()
        sizes = fill(db, runs, stfs, args.decisions, args.slices)
        print(f"\n{runs}x{stfs}: {', '.join(f'{n:,} {t}' for t, n in sizes.items())} "
              f"(filled in {time.perf_counter() - started:.0f} s; ~{runs * 4 / 24:.0f} days "
              f"of 4-h runs)", flush=True)
        config = load_config(data_dir=Path(tmp), database_url=url, monitor={"port": 0})
        result: dict = {"sizes": sizes}
        with background_monitor(config, db) as base, \
                httpx.Client(base_url=base, timeout=120) as client:
            cpu = backend_cpu(db)
            result["today"] = measure(client, today(RUN0 + runs, stfs), args.repeat, cpu)
            result["new"] = measure(client, new(runs, client), args.repeat, cpu)
            if baselines:
                result["status"] = timed(lambda: store_status(db), max(3, args.repeat // 10))
                with db.engine.begin() as connection:
                    for name, _ in MONITOR_INDEXES:
                        connection.execute(text(f"DROP INDEX {name}"))
                    analyze(connection)
                result["bare"] = measure(client, NO_INDEX_PAGES, max(3, args.repeat // 10))
        db.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="5000x2000",
                        help="comma-separated RUNSxSTFS histories, smallest first")
    parser.add_argument("--decisions", type=int, default=200, help="brokerage decisions/run")
    parser.add_argument("--slices", type=int, default=200, help="fast-path slices per run")
    parser.add_argument("--repeat", type=int, default=100, help="requests per endpoint")
    parser.add_argument("--postgres", default=POSTGRES_DEFAULT_URL)
    args = parser.parse_args()
    scales = [tuple(int(x) for x in s.split("x")) for s in args.scales.split(",")]
    results = {s: one_scale(*s, args, baselines=s == scales[-1]) for s in scales}
    largest = results[scales[-1]]
    header = "".join(f" {f'{r}x{s} p50/p95/p99 ms, cpu p50/p99':>36}" for r, s in scales)
    for group in ("today", "new"):
        print(f"\n{'endpoint (' + group + ')':52}{header}")
        for index, path in enumerate(largest[group]):
            cells = "".join(
                " {:>36}".format("{:.0f}/{:.0f}/{:.0f}, {:.0f}/{:.0f}".format(
                    *list(results[s][group].values())[index])) for s in scales)
            bare = largest.get("bare", {}).get(path)
            print(f"{path[:52]:52}{cells}" + (f"   no-index p50 {bare[0]:.0f}" if bare else ""))
    print(f"{'baseline: epic-wfms status (whole-history aggregates)':52} "
          f"{'/'.join(f'{v:.0f}' for v in largest['status']):>36}")
    slow = [p for g in ("today", "new") for p, v in largest[g].items() if v[2] > 200]
    costly = [p for g in ("today", "new") for p, v in largest[g].items() if v[4] > 200]
    print(f"\nevery page p99 under 200 ms at {scales[-1][0]}x{scales[-1][1]}: "
          + ("yes" if not slow else f"no: {slow}"))
    print("every page's CPU time p99 under 200 ms: "
          + ("yes" if not costly else f"no: {costly}"))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"(HTTP through uvicorn on loopback; machine load average {load} "
          f"on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
