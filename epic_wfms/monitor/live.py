"""Server-sent events: pages (and any client) hear when the store changes, without reload.

The stream polls a cheap "pulse" of the store (newest ids and times, all indexed) so it works
the same whether the agents run in this process or elsewhere against a shared store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from epic_wfms.monitor import queries as q
from epic_wfms.monitor.api.errors import ERROR_RESPONSES, error_response
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.state import MonitorState, monitor_state, reader

router = APIRouter(responses=ERROR_RESPONSES)
KEEPALIVE_S = 15.0


def _snapshot(state: MonitorState) -> dict[str, Any]:
    with state.reads.session() as session:
        return {"pulse": q.pulse(session), "detector": q.detector_state(session)}


async def change_events(request: Request, state: MonitorState, max_events: int | None
                        ) -> AsyncIterator[str]:
    last: list[Any] | None = None
    sent, quiet = 0, 0.0
    period = state.config.monitor.live_poll_s
    yield f"retry: {int(period * 1000)}\n\n"
    while max_events is None or sent < max_events:
        if await request.is_disconnected():
            return
        snapshot = await run_in_threadpool(_snapshot, state)
        if snapshot["pulse"] != last:
            last = snapshot["pulse"]
            sent += 1
            quiet = 0.0
            yield f"id: {sent}\nevent: change\ndata: {json.dumps(snapshot)}\n\n"
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(period)
        quiet += period


async def _counted(state: MonitorState, stream: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for chunk in stream:
            yield chunk
    finally:  # the client went away or the stream ended: its place is free again
        state.streams.leave()


@router.get("/api/v1/events", tags=["live"], summary="Server-sent events on store changes",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       429: {"description": "too many open streams"}})
async def events(request: Request,
                 max_events: Annotated[int | None, Query(ge=1, le=10_000)] = None,
                 _: Principal = Depends(reader),
                 state: MonitorState = Depends(monitor_state)) -> Response:
    limit = state.config.monitor.max_event_streams
    if not state.streams.enter(limit):
        return error_response(429, "too_many_streams", f"{limit} event streams are open",
                              "monitor.max_event_streams bounds them",
                              "retry later, or close other pages of this monitor",
                              headers={"Retry-After": "5"})
    return StreamingResponse(_counted(state, change_events(request, state, max_events)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
