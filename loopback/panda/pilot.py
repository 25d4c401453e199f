"""A real PanDA Pilot 3 (``panda-pilot`` 3.7.0.36 from PyPI) against the loopback server.

The pilot is run the way a batch slot runs it: ``python pilot.py`` from the pilot's source
tree (PyPI's sdist; the package installs no entry point), pilot user ``generic``, one job,
then it exits. What stands in for the site:

- queue and storage description (CRIC in production): ``<queue>.json`` (``--queuedata-url``),
  ``schedconfig.json`` (``LOCAL_AGIS_SCHEDCONF``) and ``storage.json`` (``--storagedata-url``),
  written from the queue as ``LocalPandaServer`` puts it into ``schedconfig_json``;
- data: copytool ``mv`` (Pilot 3's copytool for pre-placed files, as on ARC/Harvester
  sites): the STFs are linked in from their Rucio replica paths before the pilot starts
  (``--input-destination-dir``), outputs are left in the pilot's work dir (``--cleanup
  False``) for the caller to register;
- the transformation: the generic pilot user only runs transformations named under its
  built-in base URLs, copied from ``HARVESTER_WORKDIR`` when that is set; jobs name
  ``http://pandaserver-doma.cern.ch:25080/trf/user/epic-reco`` (no request goes there) and
  ``epic-reco`` in the Harvester work dir runs the job's command;
- auth: the production token as a file (``OIDC_AUTH_TOKEN``/``OIDC_AUTH_DIR``/
  ``OIDC_AUTH_ORIGIN``), sent by the pilot's curl as ``Authorization: Bearer``.

Safety: at exit Pilot 3 kills every orphaned process of its user (``kill_orphans``), which on
a shared machine means other people's servers. ``PILOT_NOKILL`` switches that off, and the
pilot runs in its own PID namespace (``unshare``) so it cannot see other processes at all.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from epic_wfms.wfms.panda.errors import PandaError
from loopback.common import REPO
from loopback.panda.server import LocalPandaServer, PandaIdentity

PILOT_PACKAGE = "panda-pilot==3.7.0.36"
TRF_BASE_URL = "http://pandaserver-doma.cern.ch:25080/trf/user"  # one of the pilot's own
TRANSFORMATION = f"{TRF_BASE_URL}/epic-reco"
FASTPATH_TRANSFORMATION = f"{TRF_BASE_URL}/epic-fastpath"  # the fast path's worker jobs
_TRF_SCRIPT = ('#!/bin/sh\n# ePIC transformation: run the job command given as arguments\n'
               'exec "$@"\n')


def default_pilot_dir() -> Path:
    return Path(os.environ.get("EPIC_PILOT_DIR", REPO / ".venv-pilot"))


def ensure_pilot(dest: Path | None = None) -> Path:
    """The Pilot 3 source tree (``pilot.py``), unpacked once from PyPI's sdist and cached."""
    dest = dest or default_pilot_dir()
    tree = dest / "pilot3"
    stamp = dest / f".installed-{PILOT_PACKAGE}"
    if stamp.exists() and (tree / "pilot.py").exists():
        return tree
    download = dest / "download"
    shutil.rmtree(dest, ignore_errors=True)
    download.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                           "--no-binary", ":all:", "--dest", str(download), PILOT_PACKAGE],
                          capture_output=True, text=True)
    archives = list(download.glob("panda*pilot-*.tar.gz"))
    if proc.returncode or not archives:
        raise PandaError(f"cannot download {PILOT_PACKAGE}", why=proc.stderr[-800:],
                         fix="check that pip reaches its index; rerun `bash .ci/services-up`")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(download, filter="data")
    unpacked = next(p for p in download.iterdir() if p.is_dir())
    unpacked.rename(tree)
    stamp.touch()
    return tree


@dataclass
class PilotRun:
    """What one pilot did: its exit code, log, and the files it left in its work dir."""

    exit_code: int
    log: str
    outputs: dict[str, Path] = field(default_factory=dict)

    def failure(self) -> str:
        lines = [ln for ln in self.log.splitlines() if "| CRITICAL |" in ln or "| ERROR " in ln]
        return "\n".join(lines[-5:]) or self.log[-1500:]


@dataclass
class LocalPilot:
    """Runs Pilot 3 for ``queue`` of ``server``; ``run()`` does one job and returns."""

    server: LocalPandaServer
    workdir: Path
    queue: str = "BNL_EPIC_PROMPT"
    python: str = sys.executable
    source: Path = field(default_factory=ensure_pilot)

    def run(self, identity: PandaIdentity, inputs: dict[str, Path],
            timeout_s: float = 300) -> PilotRun:
        """Link ``inputs`` (LFN -> replica path) where copytool ``mv`` reads them, start the
        pilot with ``identity``'s token, wait for it to exit, collect what it left."""
        run_dir = self.workdir / f"pilot-{time.time_ns()}"
        stage_in = run_dir / "stagein"
        for d in (stage_in / "dest", run_dir / "out"):
            d.mkdir(parents=True)
        for lfn, path in inputs.items():
            (stage_in / lfn).symlink_to(Path(path).resolve())
        write_transformation(run_dir / "harvester")
        (run_dir / "token").write_text(identity.token)
        write_site_description(self.server, self.queue, run_dir)
        cmd = pilot_command(self.python, self.source, self.server, self.queue,
                            site_dir=run_dir, work_dir=run_dir / "work",
                            stage_in=stage_in, output_dir=run_dir / "out")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA", "X509"))}
        env.update(pilot_environment(identity.auth_vo, token_dir=run_dir, site_dir=run_dir,
                                     transformations=run_dir / "harvester", python=self.python))
        env.update(PILOT_NOKILL="1", PILOT_HOME=str(run_dir))
        log_path = run_dir / "pilot.log"
        with log_path.open("wb") as log:
            try:
                proc = subprocess.run([*_isolated(), *cmd], env=env, cwd=run_dir, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=timeout_s)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = -1
        text = log_path.read_text(errors="replace")
        outputs = {p.name: p for p in (run_dir / "work").glob("PanDA_Pilot3_*/*")
                   if p.is_file() and not p.name.startswith(("curl_", "pilotlog"))}
        return PilotRun(code, text, outputs)


def pilot_command(python: str, source: Path, server: LocalPandaServer, queue: str, *,
                  site_dir: Path | str, work_dir: Path | str, stage_in: Path | str,
                  output_dir: Path | str, extra: tuple[str, ...] = (),
                  rse_root: Path | str | None = None) -> list[str]:
    """Pilot 3's argv for one job of ``queue`` (generic pilot user, managed jobs): the queue
    and storage description in ``site_dir`` (``write_site_description``), inputs read by
    copytool ``mv`` from ``stage_in`` (it reads the parent of ``--input-destination-dir``),
    outputs left in ``work_dir`` (``--cleanup False``). With ``rse_root`` (the queue's RSE
    on local disk, described with ``mv_final_destination``), inputs are read from their
    Rucio path under it and outputs are moved to theirs."""
    inputs = str(rse_root) if rse_root is not None else f"{stage_in}/dest"
    return [python, str(Path(source) / "pilot.py"), "-q", queue, "-r", queue, "-s", queue,
            "-w", "generic", "--pilot-user", "generic", "-j", "managed",
            "--job-type", "managed", "-d", "--url", "http://127.0.0.1",
            "-p", str(server.port), "-a", str(work_dir),
            "--queuedata-url", f"{site_dir}/{{pandaqueue}}.json",
            "--storagedata-url", f"{site_dir}/storage.json",
            "--input-destination-dir", inputs,
            # an output dir would take the place of the storage's path
            *(("--output-dir", str(output_dir)) if rse_root is None else ()),
            "--cleanup", "False", *extra]


def pilot_environment(auth_vo: str, *, token_dir: Path | str, site_dir: Path | str,
                      transformations: Path | str, python: str) -> dict[str, str]:
    """What the pilot reads from its environment: the token file ``<token_dir>/token``
    sent as the production role, the queue description, where ``epic-reco`` is."""
    return {"OIDC_AUTH_TOKEN": "token", "OIDC_AUTH_DIR": f"{token_dir}/",
            "OIDC_AUTH_ORIGIN": auth_vo, "LOCAL_AGIS_SCHEDCONF": f"{site_dir}/schedconfig.json",
            "HARVESTER_WORKDIR": str(transformations),
            "PATH": f"{Path(python).parent}:{os.environ.get('PATH', '')}"}


def write_fastpath_transformation(directory: Path, worker_config: Path) -> Path:
    """``epic-fastpath``, the site's wrapper the fast path's worker jobs name: it runs ePIC's
    pilot-job worker with the installation's configuration and the job's arguments (iDDS's
    ``--run_id <run> --idle_timeout <s>``)."""
    directory.mkdir(parents=True, exist_ok=True)
    trf = directory / FASTPATH_TRANSFORMATION.rsplit("/", 1)[1]
    trf.write_text("#!/bin/sh\n# ePIC fast path: a standing worker for the run's TF slices\n"
                   "exec python -m epic_wfms.fastpath.pilot_worker --config "
                   f'{shlex.quote(str(worker_config))} "$@"\n')
    trf.chmod(0o755)
    return trf


def write_transformation(directory: Path, fault_markers: Path | None = None) -> Path:
    """``epic-reco``, the transformation the jobs name, where the pilot copies it from.

    With ``fault_markers`` (tests), the site's environment injects faults per attempt: a job
    running the reco payload runs it through ``loopback.panda.fault_injection`` with that
    markers directory; the jobs' own command lines stay what the product submitted."""
    directory.mkdir(parents=True, exist_ok=True)
    trf = directory / TRANSFORMATION.rsplit("/", 1)[1]
    script = _TRF_SCRIPT
    if fault_markers is not None:
        script = _TRF_SCRIPT.replace('exec "$@"', (
            'if [ "$1" = python ] && [ "$2" = -m ] && [ "$3" = epic_wfms.wfms.payloads.reco ]'
            '; then\n  shift 3\n  exec python -m loopback.panda.fault_injection '
            f'{shlex.quote(str(fault_markers))} "$@"\nfi\nexec "$@"'))
    trf.write_text(script)
    trf.chmod(0o755)
    return trf


def write_site_description(server: LocalPandaServer, queue: str, directory: Path,
                           timefloor_min: int = 0, rse_root: Path | None = None) -> None:
    """The queue and its storage as CRIC describes them to the pilot: ``<queue>.json``,
    ``schedconfig.json``, ``storage.json``. ``timefloor_min`` > 0 lets one pilot take
    further jobs for that long (0: one job per pilot). ``rse_root``: the queue's RSE is a
    directory of this machine (a POSIX RSE with Rucio's deterministic ``hash`` paths):
    copytool ``mv`` with ``mv_final_destination`` reads inputs from, and moves outputs to,
    ``<rse_root>/<scope>/<md5[0:2]>/<md5[2:4]>/<name>`` (Pilot 3's Rucio path), and the
    storage's protocol is ``file://localhost<rse_root>``."""
    ddm = server.queues[queue]
    protocols: dict = {}
    if rse_root is not None:
        protocol = {"endpoint": "file://localhost", "path": str(rse_root), "flavour": "POSIX",
                    "id": 1}
        protocols = {activity: [protocol] for activity in (
            "pr", "pw", "read_lan", "write_lan", "read_wan", "write_wan")}
    record = {"name": queue, "nickname": queue, "siteid": queue, "panda_resource": queue,
              "atlas_site": ddm.rsplit("_", 1)[0], "type": "production", "status": "online",
              "state": "ACTIVE", "corecount": 1, "maxrss": 64000, "maxtime": 86400,
              "maxwdir": 100000, "timefloor": timefloor_min,
              "catchall": "mv_final_destination" if rse_root is not None else "",
              "copytools": {"mv": {"setup": ""}}, "acopytools": {"pr": ["mv"], "pw": ["mv"]},
              "astorages": {"pr": [ddm], "pw": [ddm]}, "aprotocols": {},
              "direct_access_lan": False, "direct_access_wan": False, "is_cvmfs": False,
              "container_type": "", "platform": ""}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{queue}.json").write_text(json.dumps(record))
    schedconfig = directory / "schedconfig.json"
    known = json.loads(schedconfig.read_text()) if schedconfig.exists() else {}
    schedconfig.write_text(json.dumps({**known, queue: record}))
    storage = directory / "storage.json"
    known = json.loads(storage.read_text()) if storage.exists() else {}
    storage.write_text(json.dumps({**known, ddm: {
        "name": ddm, "type": "DISK", "is_deterministic": True, "state": "ACTIVE",
        "site": record["atlas_site"], "rprotocols": {"1": protocols["pw"]} if protocols else {},
        "arprotocols": protocols}}))


def _isolated() -> list[str]:
    """``unshare`` into a new PID namespace (with a user namespace when not root)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    base = [unshare, "--pid", "--fork", "--mount-proc"]
    if os.getuid() != 0:
        base.insert(1, "--map-root-user")
    probe = subprocess.run([*base, "true"], capture_output=True)
    return base if probe.returncode == 0 else []
