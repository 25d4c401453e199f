"""The monitor: web pages, REST API /api/v1, bearer-token auth and roles, live events,
exports and notifications (docs/monitor.md); plus the monitor agent's event log."""
