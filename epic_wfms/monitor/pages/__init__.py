"""Server-rendered pages (Jinja2) following BigMon's conventions: tables with state colours,
filters as URL query parameters, drill-down links, and ``?json`` on every page for its data."""

from epic_wfms.monitor.pages.views import router

__all__ = ["router"]
