"""Scale-out benchmark: the services demo with one and with two instances of the process and
merge agents, side by side (issue 19, R1.11).

    .venv/bin/python bench/scale_bench.py --stfs 200 --rate 0

Each arrangement runs ``epic-wfms demo --backend services [--scale process=2,merge=2]`` on
its own database of a private PostgreSQL (``loopback/postgres.py``; never the shared
``test`` database) and the shared RabbitMQ. Printed per arrangement: merged, lost, STFs
processed twice, wall time and throughput (STFs from the first registration to the last
merge, per second). On a machine with few cores the instances share them: throughput grows
with instances only where there are cores for them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from sqlalchemy import create_engine, func, select

from epic_wfms.store.schema import StfRecord
from loopback.drills import private_database
from loopback.postgres import LocalPostgres

ARRANGEMENTS = {"1 per role": None, "2 process + 2 merge": "process=2,merge=2"}


def run(postgres: LocalPostgres, workdir: Path, stfs: int, rate: float,
        scale: str | None) -> dict:
    with private_database(postgres) as url:
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump({"database_url": url,
                                          "fastpath": {"enabled": False}}))
        command = [sys.executable, "-m", "epic_wfms.cli.main", "demo", "--backend",
                   "services", "--stfs", str(stfs), "--rate", str(rate), "--json",
                   "--config", str(config), "--data-dir", str(workdir / "wfms")]
        if scale:
            command += ["--scale", scale]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"demo failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        engine = create_engine(url)
        with engine.connect() as connection:
            first, last = connection.execute(select(
                func.min(StfRecord.registered_at), func.max(StfRecord.processed_at),
            ).where(StfRecord.run_number == report["run_number"])).one()
        engine.dispose()
    span = (last - first).total_seconds() if first and last else None
    return {"merged": report["stfs_merged"], "lost": report["lost"],
            "processed_twice": report.get("processed_twice"),
            "wall_time_s": report["wall_time_s"],
            "stf_per_s": round(stfs / span, 1) if span else None, "scale": report.get("scale")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stfs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.0, help="DAQ STF/s (0: full speed)")
    args = parser.parse_args()
    results = {}
    with LocalPostgres.temporary() as postgres:
        for name, scale in ARRANGEMENTS.items():
            with tempfile.TemporaryDirectory(prefix="epic-scale-") as workdir:
                results[name] = run(postgres, Path(workdir), args.stfs, args.rate, scale)
            print(json.dumps({name: results[name]}), flush=True)
    print(f"{'arrangement':<22}{'merged':>8}{'lost':>6}{'twice':>7}{'wall s':>9}{'STF/s':>8}")
    for name, r in results.items():
        print(f"{name:<22}{r['merged']:>8}{r['lost']:>6}{r['processed_twice']!s:>7}"
              f"{r['wall_time_s']:>9}{r['stf_per_s']!s:>8}")
    return 0 if all(r["lost"] == 0 and r["processed_twice"] == 0 for r in results.values()) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
