"""JEDI's master process and the PanDA server's daemons, running for the life of the server.

As in production, two long-running processes beside the server's API do the work as a chain:

- **JEDI** (``pandajedi.jediorder.JediMaster``, run by ``jedi_master.py``): TaskRefiner,
  ContentsFeeder, JobGenerator (brokerage, splitting, job activation), PostProcessor,
  TaskCommando and WatchDog for VO ``epic``, each agent a process of the master. Loop cycles
  of ``jedi_loop_s`` for the refiner, feeder, generator and commando (production: 60-600 s).
- **the server's daemons** (``pandaserver.daemons.utils.DaemonMaster``, run by
  ``daemon_master.py``): ``add_main`` (the Adder: a pilot's final report leaves ``holding``,
  the VO's adder plug-in registers the outputs) and ``copyArchive`` (the watcher: a job
  whose pilot stopped sending heartbeats for ``HEARTBEAT_TIMEOUT_production`` is failed, and
  JEDI retries its file).

Each runs with its own ``PANDA_HOME`` (a copy of the server's configuration, its own log
directory) in its own session, watched by a ``Supervisor``: a process that exits, or whose
agents' logs go stale (an agent's loop died while the master lives on: JEDI itself checks
its agents only in their first 5 s), is restarted as a whole. JEDI reads its token once at
start (``PANDA_AUTH_ID_TOKEN``): a restart gives it a fresh one.

Gotchas (``../shared/notes/jedi.md``): loop cycles are integers >= 1; ``[taskbroker]`` and
``[watchdog]`` must exist; a stale pid file makes the detaching daemon exit silently (not used
here: the runners stay in the foreground).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from loopback.common import PLUGINS
from loopback.supervise import Supervised, environ_without

if TYPE_CHECKING:
    from loopback.panda.server import LocalPandaServer

HERE = Path(__file__).resolve().parent
# the server's Adder plug-in for VO epic: ePIC's registers outputs in Rucio (RUCIO_CONFIG)
ADDERS = {"epic": "epic_panda.adder:EpicAdderPlugin",
          "dummy": "pandaserver.dataservice.adder_dummy_plugin:AdderDummyPlugin"}


# prodSourceLabels of ePIC's tasks (taskparams.SOURCE_LABELS). Agents whose queries filter on
# the label literally (PostProcessor, TaskCommando, WatchDog) need them listed: "any" is a
# wildcard only for the JobGenerator and the plug-in factories
LABELS = "managed,test,user"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _home(server: LocalPandaServer, name: str, server_cfg: str) -> Path:
    """``<workdir>/<name>``: etc/panda with the server's configuration, its own log dir
    at DEBUG level (the agents' per-cycle lines are what shows them alive)."""
    home = server.workdir / name
    etc = home / "etc" / "panda"
    etc.mkdir(parents=True, exist_ok=True)
    (home / "log").mkdir(exist_ok=True)
    (home / "cache").mkdir(exist_ok=True)
    src = server.workdir / "etc" / "panda"
    common = (src / "panda_common.cfg").read_text()
    common = re.sub(r"(?m)^log_level=.*$", "log_level=DEBUG", common)
    (etc / "panda_common.cfg").write_text(common.replace(str(server.log_dir), str(home / "log")))
    (etc / "panda_server.cfg").write_text(server_cfg.replace(str(server.log_dir),
                                                             str(home / "log")))
    return home


def _env(server: LocalPandaServer, home: Path) -> dict[str, str]:
    who = server.identity("Epic JEDI", production=True)
    purelib = site_packages(server.venv)
    env = environ_without("PANDA", "VIRTUAL_ENV", "PYTHONPATH", "X509")
    env.update(server.server_env(), PANDA_HOME=str(home), PANDA_NO_ROOT="1", TZ="UTC",
               PANDA_AUTH="oidc", PANDA_AUTH_VO=who.auth_vo, PANDA_AUTH_ID_TOKEN=who.token,
               # as JEDI's sysconfig (panda_jedi_env): liveconfigparser and taskbuffer are
               # imported as top-level packages; our plugins (epic_jedi, epic_panda) follow
               PYTHONPATH=":".join([f"{purelib}/pandacommon", f"{purelib}/pandaserver",
                                    str(purelib), str(PLUGINS / "panda")]))
    if server.rucio_config is not None:
        env["RUCIO_CONFIG"] = str(server.rucio_config)
    return env


def jedi_agents(loop_s: int) -> dict[str, int]:
    """JEDI's agents (their logger names) and their loop cycles (s): PostProcessor's is
    fixed at 60 s upstream; WatchDog's is ``[watchdog] loopCycle``."""
    return {"TaskRefiner": loop_s, "ContentsFeeder": loop_s, "JobGenerator": loop_s,
            "TaskCommando": loop_s, "PostProcessor": 60, "WatchDog": 60}


def jedi_process(server: LocalPandaServer) -> Supervised:
    """JediMaster with our ``panda_jedi.cfg`` (daemon loop settings)."""
    home = _home(server, "jedi", (server.workdir / "etc/panda/panda_server.cfg").read_text())
    (home / "etc/panda/panda_jedi.cfg").write_text(jedi_cfg(server, daemon=True))
    loop = server.jedi_loop_s
    return Supervised(
        "JEDI", [str(server.venv / "bin/python"), "-u", str(HERE / "jedi_master.py")],
        _env(server, home), home, home / "jedi_master.out",
        # every agent logs each loop; 4 loops without a line (at least 90 s): it is dead or
        # hung (a PostProcessor was seen waiting for ever on JEDI's database-worker queue,
        # so a run's tasks never ended)
        fresh={home / "log" / f"panda-{agent}.log": max(90.0, 4.0 * cycle)
               for agent, cycle in jedi_agents(loop).items()},
        grace_s=60.0)


def daemon_process(server: LocalPandaServer) -> Supervised:
    """The server's DaemonMaster running the Adder and the heartbeat watcher."""
    cfg = (server.workdir / "etc/panda/panda_server.cfg").read_text()
    head, _, _ = cfg.partition("[daemon]")
    home = _home(server, "daemons", head + _DAEMON_CFG.format(config=json.dumps(
        daemon_config(server.watcher_period_s))))
    return Supervised(
        "PanDA daemons", [str(server.venv / "bin/python"), "-u",
                          str(HERE / "daemon_master.py")],
        _env(server, home), home, home / "daemon_master.out",
        # the Adder logs each of its ~10 s polls, the watcher each run
        fresh={home / "log" / "panda-add_main.log": 180.0,
               home / "log" / "panda-copyArchive.log": 10.0 * server.watcher_period_s},
        grace_s=60.0)


def daemon_config(watcher_period_s: int) -> dict:
    """Which of the server's daemons run, how often (s): the Adder loops (it polls every
    ~10 s inside), the watcher (``copyArchive``) every ``watcher_period_s``."""
    return {
        # argv: grace period (s) before a pilot's report is processed, adder processes
        "add_main": {"enable": True, "period": 600, "loop": True, "arguments": ["0", "2"]},
        "copyArchive": {"enable": True, "period": watcher_period_s, "sync": False},
    }


def heartbeat_config(timeout_s: int) -> list[tuple]:
    """``ATLAS_PANDA.config`` rows the watcher reads (hours, as a float)."""
    return [("pandaserver", "watcher", "HEARTBEAT_TIMEOUT_production", str(timeout_s / 3600),
             "float", None, "loopback: a pilot killed mid-job fails its job after this")]


_DAEMON_CFG = """[daemon]
enable = True
package = pandaserver.daemons.scripts
n_proc = 2
n_dbconn = 1
proc_lifetime = 14400
config = {config}
"""


def jedi_cfg(server: LocalPandaServer, daemon: bool) -> str:
    """``panda_jedi.cfg`` for VO ``epic``: our TaskRefiner and DDM client, JEDI's generic
    broker, throttler, task setupper, post-processor and watchdog. ``daemon``: JediMaster's
    sections and short loops; else the one-cycle runners' settings."""
    loop = server.jedi_loop_s if daemon else 10
    text = _JEDI_CFG.format(host=server.pg_host, db=server.db_name, vo=server.vo, loop=loop,
                            nconn=2 if daemon else 1, labels=LABELS)
    return text + (_JEDI_DAEMON_CFG.format(vo=server.vo, labels=LABELS) if daemon else "")


_JEDI_CFG = """[master]
loggername=jedi
[db]
dbhost={host}
dbuser=panda
dbpasswd=
dbname={db}
nWorkers={nconn}
schemaJEDI=DOMA_PANDA
schemaDEFT=DOMA_DEFT
schemaPANDA=DOMA_PANDA
schemaPANDAARCH=DOMA_PANDAARCH
schemaMETA=DOMA_PANDAMETA
[ddm]
modConfig={vo}:1:epic_jedi.ddm:EpicJediDDMClient
voWithScope=atlas
user_scope_in_lowercase=True
[confeeder]
procConfig={vo}:any:1
nWorkers=1
loopCycle={loop}
checkInterval=0
[taskrefine]
modConfig={vo}:any:epic_jedi.task_refiner:EpicTaskRefiner
procConfig={vo}:any:1
nWorkers=1
loopCycle={loop}
[jobbroker]
modConfig={vo}:any:pandajedi.jedibrokerage.GenJobBroker:GenJobBroker
[jobthrottle]
modConfig={vo}:any:pandajedi.jedithrottle.GenJobThrottler:GenJobThrottler
[jobgen]
procConfig={vo}:any:1:
nTasks=50
nFiles=5000
nWorkers=1
loopCycle={loop}
lockInterval=0
touchSandbox=False
[postprocessor]
modConfig={vo}:any:pandajedi.jedipprocess.GenPostProcessor:GenPostProcessor
procConfig={vo}:{labels}:1
nWorkers=1
nTasks=50
loopCycle=60
[tasksetup]
modConfig={vo}:any:pandajedi.jedisetup.GenTaskSetupper:GenTaskSetupper
[tcommando]
procConfig={vo}:{labels}:1
nWorkers=1
loopCycle={loop}
"""

# what JediMaster reads beyond the agents above: no TaskBroker (ATLAS-only), the generic
# WatchDog (pending/timeouts of tasks)
_JEDI_DAEMON_CFG = """[taskbroker]
modConfig=
procConfig={vo}:managed:0
nWorkers=1
loopCycle=600
[watchdog]
modConfig={vo}:any:pandajedi.jedidog.GenWatchDog:GenWatchDog
procConfig={vo}:{labels}:1
loopCycle=60
waitForPicked=30
waitForPending=60
timeoutForPending=7
waitForLocked=60
waitForThrottled=120
waitForExhausted=48
waitForAchieved=60
"""
