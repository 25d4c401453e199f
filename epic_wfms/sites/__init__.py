"""The ePIC site catalogue: E1/E2 facilities, their queues, storage, links and shares (R5, R8).

``site_configs/*.yaml`` (one file per site) is loaded by :func:`load_catalogue` into
pydantic models; brokerage and the Harvester generator read the validated catalogue.
"""

from epic_wfms.sites.catalogue import Catalogue, CatalogueError, load_catalogue
from epic_wfms.sites.models import (
    CRITICALITY,
    Link,
    Queue,
    Site,
    StorageElement,
    WorkflowClass,
)

__all__ = [
    "CRITICALITY",
    "Catalogue",
    "CatalogueError",
    "Link",
    "Queue",
    "Site",
    "StorageElement",
    "WorkflowClass",
    "load_catalogue",
]
