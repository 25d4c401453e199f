"""Record lifecycles as code: one module per lifecycle, each a StrEnum of states, the allowed
moves in one table and the named groups the code asks about (docs/lifecycles.md is generated
from them: ``epic-wfms lifecycles``). Store columns keep the enums' string values."""

from epic_wfms.lifecycle.agent import AGENT
from epic_wfms.lifecycle.core import Group, Lifecycle, Move
from epic_wfms.lifecycle.fastpath import SLICE, WORKER
from epic_wfms.lifecycle.job import JOB
from epic_wfms.lifecycle.merge import MERGE
from epic_wfms.lifecycle.run import RUN
from epic_wfms.lifecycle.stf import ARCHIVE, AWAITED, PROCESSING
from epic_wfms.lifecycle.template import STEP_RUN, SUBMISSION

LIFECYCLES: tuple[Lifecycle, ...] = (
    RUN, PROCESSING, ARCHIVE, AWAITED, JOB, MERGE, SLICE, WORKER, AGENT, SUBMISSION, STEP_RUN,
)

__all__ = ["LIFECYCLES", "Group", "Lifecycle", "Move"]
