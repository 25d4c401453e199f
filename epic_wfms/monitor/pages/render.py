"""Rendering: a page is a template plus its data; ``?json`` returns the data instead."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))

STATE_CLASSES = {  # BigMon-like colours by state name
    "finished": "ok", "processed": "ok", "done": "ok", "ok": "ok", "archived": "ok",
    "closed": "ok", "running": "run", "activated": "act", "defined": "act", "queued": "act",
    "retrying": "warn", "deferred": "warn", "pending": "act", "failed": "bad", "cancelled": "bad",
    "corrupt": "bad", "open": "run", "announced": "act", "not_required": "muted",
    "waiting": "muted", "merged": "ok", "registered": "act", "stopped": "muted",
    "suspended": "warn", "resumed": "ok",
    # PanDA task states, brokerage outcomes, site health, fast path (issue 16)
    "submitted": "act", "ready": "act", "scouting": "run", "completed": "ok",
    "broken": "bad", "aborted": "bad", "exhausted": "bad", "assigned": "ok",
    "no_candidate": "bad", "degraded": "warn", "avoided": "bad", "probing": "warn",
    "idle": "muted", "exited": "muted", "dead": "bad",
}


def state_class(value: Any) -> str:
    return "st-" + STATE_CLASSES.get(str(value), "muted")


def short_time(value: Any) -> Markup | str:
    """``MM-DD HH:MM:SS`` (UTC) in a <time> with the full ISO time: tables stay narrow."""
    if not value:
        return "\u2013"
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(
        at.isoformat(), at.strftime("%m-%d %H:%M:%S"))


def seconds_between(a: Any, b: Any) -> str:
    if not a or not b:
        return ""
    delta = (datetime.fromisoformat(str(b)) - datetime.fromisoformat(str(a))).total_seconds()
    return f"+{delta:.2f} s"


def query_with(request: Request, **changes: Any) -> str:
    """The current URL's query string with some parameters changed (filter/paging links)."""
    params = dict(request.query_params)
    params.pop("json", None)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    from urllib.parse import urlencode
    return "?" + urlencode(params) if params else "?"


templates.env.filters.update(state=state_class, t=short_time)
templates.env.globals.update(seconds_between=seconds_between, query_with=query_with)


def wants_json(request: Request) -> bool:
    return "json" in request.query_params or request.headers.get(
        "accept", "").startswith("application/json")


def page(request: Request, template: str, data: dict[str, Any], title: str,
         status_code: int = 200, plots: dict[str, Any] | None = None
         ) -> HTMLResponse | JSONResponse:
    """``plots``: SVG rendered from ``data`` for the HTML page only (``?json`` has the data)."""
    if wants_json(request):
        return JSONResponse(data, status_code=status_code)
    return templates.TemplateResponse(request, template, {
        "data": data, "title": title, "nav": template.removesuffix(".html"),
        "plots": plots or {}}, status_code=status_code)
