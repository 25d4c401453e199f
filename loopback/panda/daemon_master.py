"""The PanDA server's daemon master in the foreground, with the PanDA venv's Python.

``pandaserver.daemons.master`` detaches (python-daemon) and needs a pid file; this runs the
same ``DaemonMaster`` with the ``[daemon]`` settings of ``$PANDA_HOME/etc/panda/
panda_server.cfg`` in the foreground (see chain.py): the harness started it in its own
session and stops its process group.

Usage: PANDA_HOME=<home> python daemon_master.py
"""

import logging
import sys

from pandaserver.config import daemon_config
from pandaserver.daemons.utils import DaemonMaster


def main() -> None:
    log = logging.getLogger("PanDA-Daemon-Master")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)-12s: %(levelname)-8s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    DaemonMaster(logger=log, n_workers=int(getattr(daemon_config, "n_proc", 1)),
                 n_dbconn=int(getattr(daemon_config, "n_dbconn", 1)),
                 worker_lifetime=int(getattr(daemon_config, "proc_lifetime", 28800)),
                 use_tbif=bool(getattr(daemon_config, "use_tbif", False))).run()


if __name__ == "__main__":
    main()
