"""JEDI's master process in the foreground, with the PanDA venv's Python (see chain.py).

``JediMaster.py`` run as a script detaches (python-daemon) and writes a pid file; a harness
wants it in the foreground, in a session it started, stopped with its process group. This is
the same ``JediMaster().start()`` the script calls inside its daemon context.

Usage: PANDA_HOME=<home with etc/panda/panda_jedi.cfg> python jedi_master.py
"""

from pandajedi.jediorder.JediMaster import JediMaster

if __name__ == "__main__":
    JediMaster().start()
