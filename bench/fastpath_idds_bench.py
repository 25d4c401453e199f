"""Fast-path pool through iDDS and Harvester vs the embedded pool: slice latency and lead time.

    .venv/bin/python bench/fastpath_idds_bench.py [--stfs 30] [--rate 2]

Starts the loopback stack once (Rucio, PanDA + JEDI + daemons, Harvester with Pilot 3,
idds-server with its prompt service), then plays the same DAQ run twice through the fast
path (slicer + pool, STOMP bus, the ingest role beside it), with a pool of two workers:

  embedded  workers in the fast-path process (``fastpath.pool.provider: embedded``)
  idds      pilot jobs: iDDS's prompt service makes the PanDA task at ``run_imminent``,
            Harvester starts a pilot per job, each runs ePIC's worker (``epic-fastpath``)

and prints, for each: slices done, slice latency (TF sample available -> slice completed)
p50/p99, and the time from ``run_imminent`` to the first worker registered and to the first
slice done. The run starts when the pool is up (as run control gives the pool its lead
time), so latency is the steady state and the lead time is reported apart.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from epic_wfms.config import Config, load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.fastpath.results import fastpath_report
from epic_wfms.installation import Installation
from epic_wfms.store.schema import FastPathWorkerRecord, TfSliceRecord
from loopback.panda.demo import stack_for

POOL = {"min": 2, "target": 2, "max": 2}


def first(db, column, run: int):
    with db.session() as session:
        model = column.class_
        return session.scalar(select(func.min(column)).where(model.run_number == run))


def play(config: Config, provider: str, run: int, stfs: int, rate: float) -> dict:
    pool = config.fastpath.pool.model_copy(update={"provider": provider, **POOL})
    config = config.model_copy(update={
        "fastpath": config.fastpath.model_copy(update={"pool": pool, "drain_grace_s": 0.5}),
        # each pool's run in a store of its own (the DAQ's state starts over)
        "database_url": f"sqlite:///{config.data_dir / f'{provider}.sqlite'}"})
    installation = Installation.build(config, roles=("ingest", "fastpath"))
    orchestrator = installation.start()
    daq = installation.daq(DaqSettings(rate_hz=rate, tf_sample_size=10, seed=7,
                                       stf_size_bytes=64 * 1024))
    try:
        daq.bring_up()
        announced = datetime.now(UTC)
        started = time.monotonic()
        daq.run_imminent(run, target=stfs)
        if not orchestrator.fastpath.pool.wait_ready(pool.provision_timeout_s if provider ==
                                                     "embedded" else 600):
            raise RuntimeError(f"{provider}: the pool was not up after run_imminent")
        ready_s = time.monotonic() - started
        daq.start_run(run)
        for sequence, _ in daq.paced(range(stfs)):
            daq.write_stf(run, sequence, datetime.now(UTC))
        daq.end_run(run, stfs)
        if not orchestrator.fastpath.pool.wait_drained(600):
            raise RuntimeError(f"{provider}: the fast path did not drain within 600 s")
        db = installation.db
        registered = first(db, FastPathWorkerRecord.registered_at, run)
        done = first(db, TfSliceRecord.completed_at, run)
        report = fastpath_report(db, run)
        return {"provider": provider, "slices": report["slices"],
                "latency_s": report["slice_latency_s"], "pool_ready_s": round(ready_s, 2),
                "first_worker_s": round((registered - announced).total_seconds(), 2),
                "first_slice_after_start_s": round((done - announced).total_seconds()
                                                   - ready_s, 2) if done else None,
                "workers": report["fastpath_workers"]}
    finally:
        installation.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stfs", type=int, default=30)
    parser.add_argument("--rate", type=float, default=2.0, help="STFs per second (ePIC: ~2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="epic-fastpath-idds-") as root:
        config = load_config(data_dir=Path(root))  # private: the temporary directory
        print("starting the loopback stack (Rucio, PanDA, JEDI, Harvester, iDDS) ...",
              flush=True)
        with stack_for(config, lambda *_: None) as (config, _stack):
            results = [play(config, "embedded", 1, args.stfs, args.rate),
                       play(config, "idds", 2, args.stfs, args.rate)]
    print(f"\n{args.stfs} STFs at {args.rate:g}/s, 3 slices each, pool of 2 workers\n")
    print(f"{'pool':10} {'slices done':>11} {'p50 s':>7} {'p99 s':>7} "
          f"{'first worker s':>15} {'pool up s':>10}")
    for r in results:
        print(f"{r['provider']:10} {r['slices']['done']:>5}/{r['slices']['total']:<5} "
              f"{r['latency_s']['p50']:>7} {r['latency_s']['p99']:>7} "
              f"{r['first_worker_s']:>15} {r['pool_ready_s']:>10}")
    base, idds = results
    if base["latency_s"]["p50"] and idds["latency_s"]["p50"]:
        print(f"\nidds/embedded: p50 x{idds['latency_s']['p50'] / base['latency_s']['p50']:.2f}"
              f", p99 x{idds['latency_s']['p99'] / base['latency_s']['p99']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
