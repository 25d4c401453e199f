"""Rucio benchmark: STF registrations per second through a real Rucio server, and where the
time goes.

    make bench            (or: .venv/bin/python bench/rucio_bench.py --stfs 100)

One Rucio 41.5.1 server (gunicorn, 2 workers x 4 threads, PostgreSQL) is started on loopback
(``.venv-rucio``, created on first use). Two ways of doing what ingest does per STF --
register the replica on the DAQ buffer with its metadata, attach it to the run dataset and
its E1 subset -- on the same files, same run:
  baseline   one STF at a time, one call per operation (register_file, attach per dataset):
             5 REST calls/STF
  combined   one STF at a time, registration and both attachments in one call (what ingest
             does with Rucio): 2 REST calls/STF
  bulk       batches of --batch STFs the same way: 2 REST calls per batch
Printed: STFs/s of each, the ratio, and the REST calls with their total server time.
"""

from __future__ import annotations

import argparse
import collections
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

import requests

from epic_wfms.config import Config, RucioConfig
from epic_wfms.ddm import DID, FileSpec, LocalRSE
from epic_wfms.ddm.rucio.backend import RucioDDM
from epic_wfms.model import naming
from epic_wfms.model.checksum import file_adler32
from loopback.rucio.server import LocalRucioServer, add_scope, provision


class CallTimer:
    """Time every REST call the Rucio client makes, by endpoint."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        self._lock = threading.Lock()
        self._original = requests.Session.request

    def __enter__(self) -> CallTimer:
        timer = self

        def timed(session, method, url, *args, **kwargs):
            start = time.perf_counter()
            try:
                return timer._original(session, method, url, *args, **kwargs)
            finally:
                path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
                path = re.sub(r"/(t[0-9a-f]{10}|[0-9a-f]{32})(/|$).*", "/…", path)
                with timer._lock:
                    entry = timer.calls[f"{method} {path}"]
                    entry[0] += 1
                    entry[1] += time.perf_counter() - start

        requests.Session.request = timed
        return self

    def __exit__(self, *exc) -> None:
        requests.Session.request = self._original


def make_files(directory: Path, run: int, n: int, size: int) -> list[FileSpec]:
    directory.mkdir(parents=True, exist_ok=True)
    specs = []
    for seq in range(n):
        path = directory / naming.stf_filename(run, seq)
        path.write_bytes(secrets.token_bytes(size))
        specs.append(FileSpec(DID("epic", path.name), "DAQ_BUFFER", str(path), size,
                              file_adler32(path), {"run_number": run, "sequence": seq,
                                                   "state": "run", "substate": "physics"}))
    return specs


def datasets(ddm: RucioDDM, run: int) -> tuple[DID, DID]:
    run_ds = DID("epic", naming.run_dataset(run))
    site_ds = DID("epic", naming.site_dataset(run, "E1_BNL"))
    for did in (run_ds, site_ds):
        ddm.add_dataset(did, {"run_number": run})
    return run_ds, site_ds


def one_by_one(ddm: RucioDDM, specs: list[FileSpec], run: int) -> float:
    run_ds, site_ds = datasets(ddm, run)
    start = time.perf_counter()
    for spec in specs:
        ddm.register_file(spec)
        ddm.attach(run_ds, [spec.did])
        ddm.attach(site_ds, [spec.did])
    return time.perf_counter() - start


def combined(ddm: RucioDDM, specs: list[FileSpec], run: int) -> float:
    run_ds, site_ds = datasets(ddm, run)
    start = time.perf_counter()
    for spec in specs:
        ddm.register_and_attach([spec], {run_ds: [spec.did], site_ds: [spec.did]})
    return time.perf_counter() - start


def bulk(ddm: RucioDDM, specs: list[FileSpec], run: int, batch: int) -> float:
    run_ds, site_ds = datasets(ddm, run)
    start = time.perf_counter()
    for i in range(0, len(specs), batch):
        chunk = specs[i:i + batch]
        ddm.register_and_attach(chunk, {ds: [s.did for s in chunk] for ds in (run_ds, site_ds)})
    return time.perf_counter() - start


def report(name: str, n: int, seconds: float, timer: CallTimer) -> float:
    rate = n / seconds
    print(f"{name:9s} {n:5d} STFs in {seconds:7.2f} s = {rate:8.1f} STF/s")
    for endpoint, (count, total) in sorted(timer.calls.items(), key=lambda kv: -kv[1][1]):
        print(f"          {count:6d} x {endpoint:34s} {total:7.2f} s "
              f"({1000 * total / count:6.1f} ms/call)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stfs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--size", type=int, default=64 * 1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="epic-rucio-bench-"))
    t0 = time.perf_counter()
    server = LocalRucioServer(work / "server").start()
    print(f"Rucio 41.5.1 server up in {time.perf_counter() - t0:.1f} s at {server.url}")
    try:
        config = Config()
        rses = [LocalRSE(r.name, r.site, r.type, work / "rses" / r.name,
                         deterministic=r.name != config.daq_rse) for r in config.rses]
        scope = f"t{secrets.token_hex(5)}"
        settings = RucioConfig(host=server.url, username=server.username,
                               password=server.password, scope=scope)
        ddm = RucioDDM(settings, rses)
        provision(ddm.client, rses)
        add_scope(ddm.client, scope)
        base_specs = make_files(work / "daq" / "a", 1, args.stfs, args.size)
        one_specs = make_files(work / "daq" / "b", 2, args.stfs, args.size)
        bulk_specs = make_files(work / "daq" / "c", 3, args.stfs, args.size)
        with CallTimer() as timer:
            base = report("baseline", args.stfs, one_by_one(ddm, base_specs, 1), timer)
        with CallTimer() as timer:
            one = report("combined", args.stfs, combined(ddm, one_specs, 2), timer)
        with CallTimer() as timer:
            fast = report(f"bulk/{args.batch}", args.stfs,
                          bulk(ddm, bulk_specs, 3, args.batch), timer)
        print(f"combined (ingest's path) is {one / base:.1f}x and bulk {fast / base:.1f}x the "
              f"one-by-one baseline (ePIC's DAQ: ~2 STF/s)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
