"""Parameterized ePIC workflow templates (R6.3): YAML + Jinja2 -> rendered workflow -> targets.

A physicist writes parameters in detector/physics terms (beam, Q2, production tags); the
engine validates them, renders the template deterministically and hands the rendered
workflow to a target: PanDA task parameters, an iDDS workflow, CWL, or the local runner.
See docs/templates.md.
"""

from epic_wfms.templates.errors import (
    ParameterError,
    TagError,
    TagImmutableError,
    TemplateError,
)
from epic_wfms.templates.loader import TemplateLibrary, default_template_dir
from epic_wfms.templates.render import render_template

__all__ = [
    "ParameterError",
    "TagError",
    "TagImmutableError",
    "TemplateError",
    "TemplateLibrary",
    "default_template_dir",
    "render_template",
]
