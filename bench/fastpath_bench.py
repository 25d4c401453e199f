"""Fast-path benchmark: TF-available -> slice-result latency, standing pool vs per-slice start-up.

    make bench            (or: .venv/bin/python bench/fastpath_bench.py --help)

The same DAQ run (same seed, STFs, TF samples and rate) is played twice on the embedded
backends, the whole orchestrator running (STF ingest, archive, reco, merge) with the fast path
alongside; only ``fastpath.runner`` differs:
  standing    each worker keeps one payload process for all its slices (the design)
  per_slice   each slice starts a fresh payload process (the baseline it replaces)
Both pay the payload's start-up (interpreter, imports, calibration of 65536 channels): once per
worker, or once per slice. Goal: p99 < 1 s at the DAQ rate and >= 10x lower than per-slice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from epic_wfms.config import load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.fastpath.results import fastpath_report
from epic_wfms.installation import Installation
from epic_wfms.store.schema import TfSliceRecord
from epic_wfms.streaming.report import percentile

DAQ_RATE = 2.0  # ePIC DAQ: ~2 STF/s


def play(root: Path, runner: str, n: int, rate: float, pool: dict) -> dict:
    config = load_config(data_dir=root, processing={"merge_every": 25, "missing_grace_s": 0},
                         fastpath={"runner": runner, "pool": pool, "slice_tfs": 5,
                                   "express_tfs": 2, "drain_grace_s": 0.5})
    installation = Installation.build(config)
    orchestrator = installation.start()
    daq = installation.daq(DaqSettings(rate_hz=rate, tf_sample_size=10, seed=7))
    started = time.monotonic()
    try:
        daq.bring_up()
        daq.run_imminent(1, target=n)  # run control announces the run ahead of its start ...
        lead = time.monotonic()
        if not orchestrator.fastpath.pool.wait_ready(60):  # ... so the pool is ready
            raise RuntimeError("fast-path pool not ready 60 s after run_imminent")
        lead = time.monotonic() - lead
        daq.start_run(1)
        for sequence, _ in daq.paced(range(n)):
            daq.write_stf(1, sequence, datetime.now(UTC))
        daq.end_run(1, n)
        if not orchestrator.wait_run_finished(1, 600):
            raise RuntimeError("benchmark run did not finish within 600 s")
        if not orchestrator.fastpath.pool.wait_drained(600):
            raise RuntimeError("fast path did not drain within 600 s")
        report = fastpath_report(installation.db, 1)
        with installation.db.session() as session:
            rows = session.execute(select(TfSliceRecord.started_at, TfSliceRecord.completed_at,
                                          TfSliceRecord.express)).all()
    finally:
        installation.close()
    on_worker = [(done - start).total_seconds() for start, done, _e in rows if done]
    report["on_worker_p50"] = percentile(on_worker, 50)
    report["wall_s"] = time.monotonic() - started
    report["pool_ready_s"] = lead
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stfs", type=int, default=40)
    parser.add_argument("--rate", type=float, default=DAQ_RATE, help="DAQ rate, STF/s")
    parser.add_argument("--pool", default="2:2:4", help="fast-path pool min:target:max")
    parser.add_argument("--keep", default=None, help="keep the stores in this directory")
    args = parser.parse_args()
    low, target, high = (int(x) for x in args.pool.split(":"))
    pool = {"min": low, "target": target, "max": high}
    with tempfile.TemporaryDirectory(prefix="epic-wfms-fpbench-") as tmp:
        tmp = args.keep or tmp
        results = {runner: play(Path(tmp) / runner, runner, args.stfs, args.rate, pool)
                   for runner in ("standing", "per_slice")}
    print(f"{args.stfs} STFs at {args.rate:g} STF/s (ePIC DAQ {DAQ_RATE:g}/s), TF sample 10 TFs "
          f"-> 1 express + 2 slices per STF; pool min:target:max {args.pool}; whole embedded "
          "orchestrator running; start_run once the pool is up after run_imminent")
    header = (f"{'runner':<11}{'slices':>8}{'failed':>8}{'p50':>10}{'p99':>10}"
              f"{'express p50':>13}{'on worker p50':>15}{'pool ready':>12}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        lat, exp = r["slice_latency_s"], r["express_latency_s"]
        print(f"{name:<11}{r['slices']['done']:>8}{r['slices']['failed']:>8}"
              f"{lat['p50'] * 1e3:>8.0f}ms{lat['p99'] * 1e3:>8.0f}ms{exp['p50'] * 1e3:>11.0f}ms"
              f"{r['on_worker_p50'] * 1e3:>13.0f}ms{r['pool_ready_s']:>11.2f}s")
    s, b = results["standing"]["slice_latency_s"], results["per_slice"]["slice_latency_s"]
    print(f"standing pool: p50 {b['p50'] / s['p50']:.1f}x and p99 {b['p99'] / s['p99']:.1f}x "
          f"lower than per-slice start-up; p99 {s['p99']:.3f} s "
          f"({'meets' if s['p99'] < 1 else 'misses'} the 1 s goal)")


if __name__ == "__main__":
    main()
