"""Server-rendered pages (Jinja2) following BigMon's conventions: tables with state colours,
filters as URL query parameters, drill-down links, and ``?json`` on every page for its data."""

from fastapi import APIRouter

from epic_wfms.monitor.pages import views, work_views

router = APIRouter(include_in_schema=False)
router.include_router(views.router)
router.include_router(work_views.router)

__all__ = ["router"]
