"""Site choice across the ePIC fabric (R5, R7.5, R8): locality, capacity, shares, health.

``Fabric`` (static, from the site catalogue) + ``FabricState`` (live counters) feed
``Broker.decide`` for jobs and ``ButterflyBalancer.route`` for STFs at the two E1s. Every
``Decision`` carries its reasons as data. The live streaming decision box
(streaming/decision_box.py) routes STFs with ``ButterflyBalancer`` too.
"""

from epic_wfms.brokerage.broker import Broker
from epic_wfms.brokerage.butterfly import ButterflyBalancer
from epic_wfms.brokerage.decision import ASSIGNED, DEFERRED, NO_CANDIDATE, Decision
from epic_wfms.brokerage.fabric import Fabric
from epic_wfms.brokerage.request import JobRequest
from epic_wfms.brokerage.state import FabricState

__all__ = [
    "ASSIGNED",
    "DEFERRED",
    "NO_CANDIDATE",
    "Broker",
    "ButterflyBalancer",
    "Decision",
    "Fabric",
    "FabricState",
    "JobRequest",
]
