"""REST API, web monitor pages, metrics. Issue: monitor/REST/auth. `epic-wfms status` for now."""
