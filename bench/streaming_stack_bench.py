"""One streaming run on the embedded pool and on the real PanDA stack, side by side.

    .venv/bin/python bench/streaming_stack_bench.py [--stfs 20] [--rate 1]

Both runs are ``epic-wfms demo`` runs (the same installation builder, the same DAQ simulator):
the baseline on the embedded backends, then with ``--wfms panda`` on the loopback stack
(Rucio, PanDA server, JEDI's master, the server's daemons, Harvester starting a Pilot 3 per
job). Per STF, from the moment the DAQ made it available (``stfs.available_at``):

  running     its reco job started (``dispatched_at``: a pilot runs it)
  output      its reco output registered and the STF processed (``processed_at``)

p50/p99 of each; jobs per second through the whole chain (every job of the run, reco, merge
and gather, from the first job's activation to the last job's end); CPU seconds per STF of
each process of the run (this process with the installation, and each server with what it
reaped, e.g. Harvester with its pilots), read from /proc before the servers stop.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from epic_wfms.cli.demo import DemoOptions, run_demo
from epic_wfms.config import load_config
from epic_wfms.installation import open_database
from epic_wfms.store.schema import JobRecord, StfRecord
from epic_wfms.streaming.report import percentile
from loopback.panda.demo import stack_for

TICKS = os.sysconf("SC_CLK_TCK")
KINDS = (("jedi_master", "JEDI"), ("daemon_master", "PanDA daemons"),
         ("pilot.py", "pilots (running)"), ("venv-harvester", "Harvester (+ pilots it reaped)"),
         ("venv-panda", "PanDA server"), ("rucio-hermes", "Rucio hermes"),
         ("venv-rucio", "Rucio server"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stfs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1.0, help="STFs per second")
    args = parser.parse_args()
    options = DemoOptions(stfs=args.stfs, rate_hz=args.rate, pre_run_stfs=0, timeout_s=1800)
    rows = []
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as tmp:
        embedded = load_config(data_dir=Path(tmp) / "embedded", fastpath={"enabled": False})
        cpu_before = own_cpu()
        report = run_demo(embedded, options, None)
        rows.append(figures("embedded pool", embedded, report,
                            {"this process": own_cpu() - cpu_before}))
        config = load_config(data_dir=Path(tmp) / "panda", fastpath={"enabled": False})
        with stack_for(config, lambda *_: None) as (config, _stack):
            before = tree_cpu()
            report = run_demo(config, options, None)
            after = tree_cpu()
            cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        rows.append(figures("PanDA stack", config, report, cpu))
    print(f"{args.stfs} STFs at {args.rate}/s\n")
    print(f"{'':16} {'running p50/p99 s':>18} {'output p50/p99 s':>18} {'jobs/s':>7} "
          f"{'lost':>5} {'wall s':>7}")
    for r in rows:
        print(f"{r['name']:16} {r['running'][0]:>8.2f} /{r['running'][1]:>7.2f} "
              f"{r['output'][0]:>8.2f} /{r['output'][1]:>7.2f} {r['jobs_per_s']:>7.2f} "
              f"{r['lost']:>5} {r['wall_s']:>7.1f}")
    for r in rows:
        print(f"\nCPU s per STF, {r['name']}:")
        for name, seconds in sorted(r["cpu"].items(), key=lambda kv: -kv[1]):
            if seconds > 0:
                print(f"  {name:32} {seconds / args.stfs:8.3f}")


def figures(name: str, config, report: dict, cpu: dict[str, float]) -> dict:
    db = open_database(config)
    try:
        with db.session() as session:
            rows = session.execute(select(StfRecord.available_at, StfRecord.dispatched_at,
                                          StfRecord.processed_at).where(
                StfRecord.run_number == report["run_number"])).all()
            first, last, n = session.execute(select(
                func.min(JobRecord.activated_at), func.max(JobRecord.ended_at), func.count())
                .where(JobRecord.run_number == report["run_number"])).one()
    finally:
        db.dispose()
    running = [(d - a).total_seconds() for a, d, _ in rows if d and a]
    output = [(p - a).total_seconds() for a, _, p in rows if p and a]
    span = (last - first).total_seconds() if first and last else 0.0
    return {"name": name, "lost": report["lost"], "wall_s": report["wall_time_s"],
            "running": (percentile(running, 50), percentile(running, 99)),
            "output": (percentile(output, 50), percentile(output, 99)),
            "jobs_per_s": n / span if span else 0.0, "cpu": cpu}


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def tree_cpu() -> dict[str, float]:
    """CPU seconds of this process and its descendants, by what they are (a process counts
    with the children it reaped: a server with its workers, Harvester with its pilots)."""
    parent, stat, cmd = {}, {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        stat[pid] = sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime
    mine, totals = {os.getpid()}, defaultdict(float)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    for pid in mine:
        kind = next((k for marker, k in KINDS if marker in cmd.get(pid, "")), None)
        totals[kind or ("this process" if pid == os.getpid() else "other")] += stat.get(pid, 0)
    totals["this process"] = own_cpu()
    return dict(totals)


if __name__ == "__main__":
    main()
