"""What the monitor's request handlers share, and the FastAPI dependencies that hand it out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from epic_wfms.config import Config
from epic_wfms.monitor.auth import Authenticator, Principal
from epic_wfms.monitor.readstore import ReadStore
from epic_wfms.monitor.usage import UsageRecorder
from epic_wfms.monitor.work_control import WorkControl
from epic_wfms.monitor.writes import Operations
from epic_wfms.sites.catalogue import load_catalogue
from epic_wfms.sites.models import Site
from epic_wfms.store.database import Database
from epic_wfms.templates.loader import TemplateLibrary


@dataclass
class MonitorState:
    config: Config
    db: Database
    reads: ReadStore
    auth: Authenticator
    ops: Operations
    usage: UsageRecorder

    def configured_sites(self) -> list[dict[str, Any]]:
        return [s.model_dump() for s in self.config.sites]

    @cached_property
    def work(self) -> WorkControl:
        """Writes on tasks, submissions and campaigns."""
        return WorkControl(self.config, self.ops, self.auth)

    @cached_property
    def library(self) -> TemplateLibrary:
        return TemplateLibrary()

    @cached_property
    def catalogue(self) -> list[Site]:
        """The ePIC sites of the catalogue (package data), E1s first."""
        return sorted(load_catalogue().sites.values(), key=lambda s: (s.echelon, s.name))

    @property
    def bigmon_url(self) -> str | None:
        return self.config.monitor.bigmon_url


TOKEN_COOKIE = "epic_wfms_token"

# dependencies without I/O are async: a sync one costs a threadpool hop per request

async def monitor_state(request: Request) -> MonitorState:
    return request.app.state.monitor


async def caller(request: Request, state: MonitorState = Depends(monitor_state)) -> Principal:
    """The authenticated caller (or anonymous), remembered for usage accounting.

    Browsers navigating pages cannot send a header, so reads (GET) also take the token from
    the ``epic_wfms_token`` cookie set by "Sign in"; writes need the header (no CSRF)."""
    header = request.headers.get("authorization")
    cookie = request.cookies.get(TOKEN_COOKIE)
    if header is None and cookie and request.method == "GET":
        header = f"Bearer {cookie}"
    principal = state.auth.principal(header)
    request.state.principal = principal
    return principal


async def reader(principal: Principal = Depends(caller),
           state: MonitorState = Depends(monitor_state)) -> Principal:
    state.auth.require(principal, "read")
    return principal


def read_session(state: MonitorState = Depends(monitor_state),
                 _: Principal = Depends(reader)) -> Iterator[Session]:
    with state.reads.session() as session:
        yield session


def requires(permission: str):
    """Dependency: the caller must hold a role allowed ``permission`` (401/403 otherwise)."""

    async def check(principal: Principal = Depends(caller),
              state: MonitorState = Depends(monitor_state)) -> Principal:
        state.auth.require(principal, permission)
        return principal

    return check
