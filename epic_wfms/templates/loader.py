"""Load template YAML files, merging ``include`` (parameter/campaign libraries) and
``extends`` (a base template whose steps, parameters and campaign are inherited)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from epic_wfms.model.validation import describe_validation_error
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.params import closest
from epic_wfms.templates.schema import TemplateSpec
from epic_wfms.yamlfile import read_yaml_mapping

_MAX_DEPTH = 8


def default_template_dir() -> Path:
    """``library/`` beside this module: the ePIC templates shipped with epic-wfms (package
    data, so an installed wheel has them too)."""
    return Path(__file__).resolve().parent / "library"


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, TemplateError, "template file",
                             "a template file is a mapping that starts with 'template: NAME' "
                             "and 'version: X.Y.Z'; `epic-wfms template list` shows the names")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Child wins; parameters and campaign merge key by key; steps merge by step name."""
    merged = {**base, **over}
    for key in ("parameters", "campaign"):
        if key in base or key in over:
            merged[key] = {**base.get(key, {}), **over.get(key, {})}
    if "steps" in base and "steps" in over:
        by_name = {s.get("name"): s for s in base["steps"]}
        order = [s.get("name") for s in base["steps"]]
        for step in over["steps"]:
            if step.get("name") not in by_name:
                order.append(step.get("name"))
            by_name[step.get("name")] = {**by_name.get(step.get("name"), {}), **step}
        merged["steps"] = [by_name[n] for n in order]
    return merged


def _resolve(path: Path, depth: int = 0, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in chain or depth > _MAX_DEPTH:
        raise TemplateError(f"template {path.name}: include/extends loop",
                            " -> ".join(p.name for p in (*chain, path)),
                            "remove the circular include or extends")
    data = _read_yaml(path)
    result: dict[str, Any] = {}
    for name in data.get("include", []):
        part = _resolve(path.parent / name, depth + 1, (*chain, path))
        result = _merge(result, {k: part[k] for k in ("parameters", "campaign") if k in part})
    if data.get("extends"):
        base = _resolve(path.parent / data["extends"], depth + 1, (*chain, path))
        base.pop("abstract", None)
        result = _merge(result, base)
    return _merge(result, data)


def load_template_file(path: Path) -> tuple[TemplateSpec, str]:
    """The validated spec and the sha256 of its merged source (the template's identity)."""
    data = _resolve(Path(path).resolve())
    try:
        spec = TemplateSpec.model_validate(data)
    except ValidationError as error:
        raise TemplateError(f"template {Path(path).name} does not follow the template format",
                            describe_validation_error(error),
                            "see docs/templates.md for the fields; `epic-wfms template "
                            "validate FILE` checks a file") from None
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return spec, digest


class TemplateLibrary:
    """The templates of one directory, by name (abstract base templates are not listed)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory or default_template_dir())
        self._cache: dict[Path, tuple[TemplateSpec, str]] = {}

    def paths(self) -> dict[str, Path]:
        found = {}
        for path in sorted(self.directory.glob("*.yaml")):
            if not path.name.startswith("_") and path.is_file():
                found[path.stem] = path
        return found

    def names(self) -> list[str]:
        return sorted(self.paths())

    def path(self, name_or_file: str) -> Path:
        candidate = Path(name_or_file)
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return candidate
        paths = self.paths()
        if name_or_file not in paths:
            suggestion = closest(name_or_file, list(paths))
            raise TemplateError(
                f"no template named {name_or_file!r} in {self.directory}",
                "known templates: " + ", ".join(paths),
                f"did you mean {suggestion}?" if suggestion
                else "run `epic-wfms template list`")
        return paths[name_or_file]

    def load(self, name_or_file: str) -> tuple[TemplateSpec, str]:
        path = self.path(name_or_file).resolve()
        if path not in self._cache:
            self._cache[path] = load_template_file(path)
        return self._cache[path]
