"""Template errors: each names what is wrong, why, and what to do (epic_wfms.errors style)."""

from __future__ import annotations

from typing import Any

from epic_wfms.errors import EpicWfmsError


class TemplateError(EpicWfmsError):
    """A template file that cannot be loaded, validated or rendered."""


class ParameterError(TemplateError):
    """A parameter value that does not fit the template's parameter schema."""

    def __init__(self, parameter: str, value: Any, expected: str, suggestion: str | None = None,
                 template: str = "") -> None:
        self.parameter, self.value, self.expected, self.suggestion = (
            parameter, value, expected, suggestion)
        where = f" of template {template!r}" if template else ""
        fix = f"did you mean {suggestion}?" if suggestion else f"give {parameter}=<{expected}>"
        super().__init__(f"parameter {parameter!r}{where}: bad value {value!r}",
                         f"expected {expected}", fix)


class TagError(TemplateError):
    """A production tag that is unknown or malformed."""


class TagImmutableError(TagError):
    """A production tag that was used in production and whose definition changed."""


class TargetError(TemplateError):
    """A rendered workflow that a target (PanDA, iDDS, CWL, local) cannot take."""
