"""Fast processing path (R3.1, R3.8-R3.12): TF slices on a standing worker pool.

Nothing is imported here: the slice payload runs as ``python -m epic_wfms.fastpath.payload``
and must start without loading the orchestrator's dependencies.
"""
