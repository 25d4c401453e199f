"""Workflow templates (YAML + Jinja2 -> PanDA task / iDDS workflow specs). Issue: templates."""
