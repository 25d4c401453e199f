"""REST API ``/api/v1``: one router per resource; new resources plug in with ``register``.

Versioning (R10.6): fields are only added within v1; a breaking change gets ``/api/v2`` while
v1 stays served.
"""

from __future__ import annotations

from fastapi import APIRouter

from epic_wfms.monitor.api import control, reads, work

PREFIX = "/api/v1"
ROUTERS: list[APIRouter] = [reads.router, control.router, work.router]


def register(router: APIRouter) -> None:
    """Add a resource router (e.g. tasks from templates, sites from the catalogue)."""
    if router not in ROUTERS:
        ROUTERS.append(router)


def api_router() -> APIRouter:
    v1 = APIRouter(prefix=PREFIX)
    for router in ROUTERS:
        v1.include_router(router)
    return v1
