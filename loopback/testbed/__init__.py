"""The ePIC streaming testbed (BNLNPPS swf-testbed with swf-common-lib), run unchanged.

``source.py`` finds the testbed's pinned sources, ``venv.py`` builds their virtualenv,
``monitor.py`` answers the bookkeeping REST calls the testbed makes to its monitor, and
``runner.py`` runs one of its workflows (``workflows/workflow_runner.py --run-once``) against
a STOMP broker. The testbed's code is installed or run from its own tree, never copied here.
"""
