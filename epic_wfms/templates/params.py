"""Typed parameter validation: every refusal names the parameter, the bad value, what was
expected and, where one exists, the closest valid choice ("did you mean 18x275?")."""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from epic_wfms.templates.errors import ParameterError
from epic_wfms.templates.schema import TAG_KIND_NAMES, ParameterSpec

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def closest(value: Any, choices: list[Any]) -> str | None:
    """The valid choice nearest to ``value`` as text, or None if nothing is near."""
    texts = [str(c) for c in choices]
    match = difflib.get_close_matches(str(value), texts, n=1, cutoff=0.5)
    return match[0] if match else None


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``['beam=18x275', 'events=1000']`` -> dict; refuses text without '='."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ParameterError(pair, pair, "NAME=VALUE (e.g. -p beam=18x275)")
        values[name.strip()] = value.strip()
    return values


def describe_expected(spec: ParameterSpec) -> str:
    """A short human description of what a parameter accepts (also used in CLI help)."""
    if spec.type == "tag":
        return f"a {spec.tag_kind} tag ({TAG_KIND_NAMES[spec.tag_kind]}, e.g. {spec.tag_kind}1001)"
    text = {"string": "text", "integer": "an integer", "number": "a number",
            "boolean": "true or false", "list": f"a comma-separated list of {spec.items}s"
            }[spec.type]
    if spec.allowed is not None:
        text = "one of " + ", ".join(str(a) for a in spec.allowed)
    if spec.min is not None or spec.max is not None:
        low = "-inf" if spec.min is None else _fmt(spec.min)
        high = "inf" if spec.max is None else _fmt(spec.max)
        text += f" in [{low}, {high}]"
    if spec.unit:
        text += f" ({spec.unit})"
    return text


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _scalar(name: str, raw: Any, kind: str, spec: ParameterSpec, template: str) -> Any:
    expected = describe_expected(spec)
    if kind == "string":
        return str(raw)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ParameterError(name, raw, expected, closest(text, ["true", "false"]), template)
    try:
        if kind == "integer":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(str(raw).replace("_", "")) if not isinstance(raw, int | float) else int(raw)
        number = float(raw)
        if not math.isfinite(number):  # nan passes every bound check; inf none
            raise ValueError
        return number
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(name, raw, expected, None, template) from None


def _check_bounds(name: str, value: Any, spec: ParameterSpec, template: str) -> None:
    expected = describe_expected(spec)
    if spec.allowed is not None and value not in spec.allowed:
        raise ParameterError(name, value, expected, closest(value, spec.allowed), template)
    if spec.min is not None and value < spec.min:
        raise ParameterError(name, value, expected, _fmt(spec.min), template)
    if spec.max is not None and value > spec.max:
        raise ParameterError(name, value, expected, _fmt(spec.max), template)


def coerce_value(name: str, raw: Any, spec: ParameterSpec, template: str = "") -> Any:
    """Convert a CLI string or a YAML value to the parameter's type and check its limits."""
    if spec.type == "list":
        items = raw if isinstance(raw, list) else [p for p in str(raw).split(",") if p.strip()]
        values = [_scalar(name, item.strip() if isinstance(item, str) else item, spec.items,
                          spec, template) for item in items]
        if not values and spec.required:
            raise ParameterError(name, raw, describe_expected(spec), None, template)
        for value in values:
            _check_bounds(name, value, spec, template)
        return values
    kind = "string" if spec.type == "tag" else spec.type
    value = _scalar(name, raw, kind, spec, template)
    _check_bounds(name, value, spec, template)
    return value


def resolve_parameters(specs: Mapping[str, ParameterSpec], given: Mapping[str, Any],
                       template: str = "") -> dict[str, Any]:
    """Defaults + given values, typed and checked; unknown and missing names are refused."""
    for name, raw in given.items():
        if name not in specs:
            raise ParameterError(name, raw, "a parameter of this template: "
                                 + ", ".join(sorted(specs)), closest(name, sorted(specs)),
                                 template)
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in given:
            values[name] = coerce_value(name, given[name], spec, template)
        elif spec.required:
            raise ParameterError(name, None, f"a value (required): {describe_expected(spec)}",
                                 None if spec.example is None else str(spec.example), template)
        elif spec.default is not None:
            values[name] = coerce_value(name, spec.default, spec, template)
        else:
            values[name] = None
    return values
