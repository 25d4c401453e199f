"""Streaming benchmark: ingest->dispatch latency and sustained STF/s, against a serial baseline.

    make bench            (or: .venv/bin/python bench/streaming_bench.py --help)

Measurements in one run, same machine, same STF files and payloads:
  baseline   the naive design: one thread validates, registers, archives and processes each
             STF before looking at the next (what R4.7 forbids) -- its throughput is the yardstick
  paced      epic-wfms at a DAQ rate well above ePIC's 2 STF/s (--rate, 200 STFs): latency
  burst      epic-wfms with --burst-stfs STFs announced as fast as the DAQ can: sustained
             throughput (long enough that start and end of run do not dominate)
  services paced --target/s   the goal of issue 3: latency at 100 STF/s offered for 10 s
each on the embedded backends (one process, SQLite, in-process bus) and on the services
backends (agents as processes, RabbitMQ-STOMP, PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from epic_wfms.cli.demo import DemoOptions, services_config, wait_finished
from epic_wfms.cli.services import AgentSet, write_config
from epic_wfms.config import POSTGRES_DEFAULT_URL, load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.ddm import DID, FileSpec
from epic_wfms.installation import Installation, open_database
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from epic_wfms.store.schema import StfRecord
from epic_wfms.store.scratch import scratch_schema
from epic_wfms.streaming.report import percentile
from epic_wfms.wfms import JobSpec

DAQ_RATE = 2.0  # ePIC DAQ: ~2 STF/s


def _config(root: Path, slots: int):
    sites = [{"name": "E1_BNL", "disk_rse": "BNL_DISK", "tape_rse": "BNL_TAPE", "slots": slots},
             {"name": "E1_JLAB", "disk_rse": "JLAB_DISK", "tape_rse": "JLAB_TAPE",
              "slots": slots}]
    return load_config(data_dir=root, sites=sites,
                       processing={"merge_every": 25, "missing_grace_s": 10},
                       fastpath={"enabled": False})  # STF path only: bench/fastpath_bench.py


def run_pipeline(root: Path, n: int, rate: float, size: int, slots: int) -> dict:
    config = _config(root, slots)
    installation = Installation.build(config)
    orchestrator = installation.start()
    daq = installation.daq(DaqSettings(stf_size_bytes=size, rate_hz=rate, tf_sample_size=0))
    try:
        daq.bring_up()
        daq.physics_run(1, n)
        if not orchestrator.wait_run_finished(1, 600):
            raise RuntimeError("benchmark run did not finish within 600 s")
        with installation.db.session() as session:
            rows = session.execute(select(
                StfRecord.available_at, StfRecord.registered_at, StfRecord.dispatched_at,
                StfRecord.processed_at)).all()
            assert session.scalar(select(func.count()).select_from(StfRecord)) == n
    finally:
        installation.close()
    return _figures(rows)


def _figures(rows) -> dict:
    latency = [(d - a).total_seconds() for a, _r, d, _p in rows]
    ingest = [(r - a).total_seconds() for a, r, _d, _p in rows]
    first = min(a for a, *_ in rows)
    span_announced = (max(a for a, *_ in rows) - first).total_seconds()
    span_processed = (max(p for *_, p in rows) - first).total_seconds()
    span_registered = (max(r for _a, r, *_ in rows) - first).total_seconds()
    return {
        "n": len(rows),
        "dispatch_p50": percentile(latency, 50), "dispatch_p99": percentile(latency, 99),
        "register_p50": percentile(ingest, 50), "register_p99": percentile(ingest, 99),
        "processed_per_s": len(rows) / span_processed,
        "registered_per_s": len(rows) / span_registered,
        "announced_per_s": len(rows) / span_announced if span_announced else float("inf"),
    }


def run_services(root: Path, n: int, rate: float, size: int, slots: int) -> dict:
    """The same run through the STOMP broker and PostgreSQL, each role its own process."""
    with scratch_schema(POSTGRES_DEFAULT_URL, prefix="bench") as url:
        config = services_config(_config(root, slots).model_copy(update={"database_url": url}))
        db = open_database(config)
        agents = AgentSet(config, write_config(config, root / "services.yaml"), db)
        try:
            agents.start_all()
            ready = _agent_cpu(agents)  # start-up (imports, connections) is not per-STF work
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            daq = agents.start("daq", "--run", "1", "--stfs", str(n), "--rate", str(rate),
                               "--stf-size", str(size))
            options = DemoOptions(stfs=n, timeout_s=600)
            if not wait_finished(db, 1, options, None):
                raise RuntimeError(f"services run did not finish; logs in {agents.logs}")
            cpu = {role: (seconds - ready.get(role, 0.0)) / n * 1e3
                   for role, seconds in _agent_cpu(agents).items() if role != "daq"}
            daq.wait(60)  # the only child reaped meanwhile: its CPU is the difference
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu["DAQ"] = (after.ru_utime + after.ru_stime - children.ru_utime
                          - children.ru_stime) / n * 1e3
            with db.session() as session:
                rows = session.execute(select(
                    StfRecord.available_at, StfRecord.registered_at, StfRecord.dispatched_at,
                    StfRecord.processed_at).where(StfRecord.run_number == 1)).all()
        finally:
            agents.stop_all()
            db.dispose()
    return {**_figures(rows), "cpu_ms_per_stf": cpu}


SERVERS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}  # process names on this machine


def _processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds used so far), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        fields = tail.split()
        found[int(entry.name)] = (head.split("(", 1)[1], int(fields[1]),
                                  sum(int(f) for f in fields[11:15]) / tick)
    return found


def _agent_cpu(agents: AgentSet) -> dict[str, float]:
    """CPU seconds used so far by each agent's process tree (its pilots included), and by the
    broker's and the database's processes (machine-wide: other users of them count too)."""
    procs = _processes()

    def tree(pid: int) -> float:
        return procs.get(pid, ("", 0, 0.0))[2] + sum(
            tree(c) for c, (_n, p, _u) in procs.items() if p == pid)

    cpu = {role: tree(process.pid) for role, process in agents.processes.items()
           if process.poll() is None}
    for name, label in SERVERS.items():
        cpu[label] = sum(used for command, _p, used in procs.values() if command == name)
    return cpu


def run_baseline(root: Path, n: int, size: int) -> dict:
    """Serial: validate, register, archive to two tapes, stage, reco -- one STF at a time."""
    config = _config(root, 1)
    backends = Installation.build(config, roles=("process",))  # its executor, no roles run
    ddm, executor = backends.ddm, backends.executor
    daq = backends.daq(DaqSettings(stf_size_bytes=size, rate_hz=0, tf_sample_size=0,
                                   skip_sequences=set(range(n))))
    rows = []
    try:
        for seq in range(n):
            stf = daq.write_stf(1, seq, datetime.now(UTC))
            available = datetime.now(UTC)
            path = root / "rses" / "DAQ_BUFFER" / stf.filename
            assert file_adler32(path) == stf.adler32
            did = DID(naming.SCOPE, stf.filename)
            ddm.register_file(FileSpec(did, "DAQ_BUFFER", str(path), stf.size_bytes, stf.adler32))
            registered = datetime.now(UTC)
            ddm.add_rule(did, "BNL_TAPE|JLAB_TAPE", copies=2)
            ddm.add_rule(did, "BNL_DISK")
            out = ddm.pfn(DID(naming.SCOPE, naming.reco_output_filename(stf.filename)), "BNL_DISK")
            dispatched = datetime.now(UTC)
            done = []
            executor.submit(JobSpec("reco", "E1_BNL", "epic_wfms.wfms.payloads.reco", [
                "--input", ddm.local_path(did, "BNL_DISK"), "--output", out], [stf.filename],
                out), done.append)
            while not done:
                time.sleep(0.001)
            rows.append((available, registered, dispatched, datetime.now(UTC)))
    finally:
        backends.close()
    return _figures(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stfs", type=int, default=200, help="STFs of the paced scenarios")
    parser.add_argument("--rate", type=float, default=10.0, help="paced DAQ rate, STF/s")
    parser.add_argument("--burst-stfs", type=int, default=1000, help="STFs of a burst")
    parser.add_argument("--target", type=float, default=100.0,
                        help="offered rate of the services high-rate scenario, STF/s (10 s)")
    parser.add_argument("--size", type=int, default=64 * 1024, help="STF size, bytes")
    parser.add_argument("--slots", type=int, default=2, help="worker slots per E1 site")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="epic-wfms-bench-") as tmp:
        root = Path(tmp)
        results = {
            "baseline (serial)": run_baseline(root / "baseline", args.stfs, args.size),
            f"embedded paced {args.rate:g}/s": run_pipeline(
                root / "paced", args.stfs, args.rate, args.size, args.slots),
            "embedded burst": run_pipeline(root / "burst", args.burst_stfs, 0, args.size,
                                           args.slots),
            f"services paced {args.rate:g}/s": run_services(
                root / "s-paced", args.stfs, args.rate, args.size, args.slots),
            f"services paced {args.target:g}/s": run_services(
                root / "s-target", int(args.target * 10), args.target, args.size, args.slots),
            "services burst": run_services(root / "s-burst", args.burst_stfs, 0, args.size,
                                           args.slots),
        }
    print(f"STFs: {args.stfs} per paced scenario ({int(args.target * 10)} at {args.target:g}/s), "
          f"{args.burst_stfs} per burst; STF size {args.size} B, "
          f"{args.slots} slots per E1 site x 2 sites; ePIC DAQ rate {DAQ_RATE:g} STF/s")
    header = (f"{'scenario':<25}{'dispatch p50':>14}{'dispatch p99':>14}{'register p50':>14}"
              f"{'announced/s':>13}{'registered/s':>14}{'processed/s':>13}{'x DAQ':>8}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:<25}{r['dispatch_p50'] * 1e3:>12.1f}ms{r['dispatch_p99'] * 1e3:>12.1f}ms"
              f"{r['register_p50'] * 1e3:>12.1f}ms{r['announced_per_s']:>13.1f}"
              f"{r['registered_per_s']:>14.1f}{r['processed_per_s']:>13.1f}"
              f"{r['processed_per_s'] / DAQ_RATE:>8.1f}")
    for name in (n for n in results if n.startswith("services")):
        cpu = results[name]["cpu_ms_per_stf"]
        others = (*SERVERS.values(), "DAQ")
        agents = {role: ms for role, ms in cpu.items() if role not in others}
        servers = {role: ms for role, ms in cpu.items() if role in others}
        print(f"{name}: CPU ms per STF by agent (process tree, start-up excluded): "
              + ", ".join(f"{role} {ms:.1f}" for role, ms in agents.items())
              + f"; agents {sum(agents.values()):.1f} ms; servers and DAQ "
              + ", ".join(f"{role} {ms:.1f}" for role, ms in servers.items())
              + f"; total {sum(cpu.values()):.1f} ms = at most "
              f"{os.cpu_count() * 1e3 / sum(cpu.values()):.0f} STF/s on {os.cpu_count()} cores")
    base = results["baseline (serial)"]["processed_per_s"]
    for name in ("embedded burst", "services burst"):
        burst = results[name]["processed_per_s"]
        print(f"{name}: sustained {burst:.1f} STF/s = {burst / base:.2f}x the serial baseline, "
              f"{burst / DAQ_RATE:.1f}x the ePIC DAQ rate")


if __name__ == "__main__":
    main()
