"""JEDI's master process in the foreground, with the PanDA venv's Python (see chain.py).

``JediMaster.py`` run as a script detaches (python-daemon) and writes a pid file; a harness
wants it in the foreground, in a session it started, stopped with its process group. This is
the same ``JediMaster().start()`` the script calls inside its daemon context.

One setting differs: each of JEDI's DB-worker processes (``JediTaskBuffer``, started by
``CommandSendInterface.launchChild`` as ``JediTaskBuffer(channel)``) gets two database
connections instead of its default one. panda-jedi (panda-server 1.0.4) deadlocks a worker
with one: ``prepareTasksToBeFinished_JEDI`` and ``setScoutJobDataToTasks_JEDI`` hold the
worker's only connection while ``get_site_mapper()`` rebuilds the site mapper (every 10
minutes), which asks the same pool for a connection (``load_resource_types``) and waits
forever; the PostProcessor then hangs until the supervisor restarts JEDI (docs/panda-idds.md).
Nothing installed is changed: the class JEDI looks up by name is given the larger default.

Usage: PANDA_HOME=<home with etc/panda/panda_jedi.cfg> python jedi_master.py
"""

from pandajedi.jedicore import JediTaskBuffer as task_buffer_module
from pandajedi.jediorder.JediMaster import JediMaster

DB_CONNECTIONS_PER_WORKER = 2  # one for the call, one for the site mapper it may rebuild


class JediTaskBufferWithSpare(task_buffer_module.JediTaskBuffer):
    def __init__(self, conn, nDBConnection=DB_CONNECTIONS_PER_WORKER):
        super().__init__(conn, nDBConnection=max(nDBConnection, DB_CONNECTIONS_PER_WORKER))


if __name__ == "__main__":
    task_buffer_module.JediTaskBuffer = JediTaskBufferWithSpare  # what launchChild looks up
    JediMaster().start()
