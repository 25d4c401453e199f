"""Render a template: parameters + tags -> a typed, deterministic ``RenderedWorkflow``.

Every Jinja2 string of a template is compiled once (``CompiledTemplate``); rendering then
only evaluates. Undefined names are errors (StrictUndefined), nothing depends on time or
randomness, and the result carries the template's hash and its own (R1.12). Templates are
untrusted input: they are evaluated in a bounded, immutable sandbox (``sandbox.py``) and
every value in their commands is shell-quoted for its place (``commands.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, Undefined, UndefinedError
from jinja2.exceptions import SecurityError
from pydantic import ValidationError

from epic_wfms.model.validation import describe_validation_error
from epic_wfms.templates import commands
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.loader import TemplateLibrary
from epic_wfms.templates.naming import dataset_name
from epic_wfms.templates.params import closest, resolve_parameters
from epic_wfms.templates.sandbox import (
    NativeTemplateSandbox,
    TemplateSandbox,
    check_result,
    refuse_statements,
)
from epic_wfms.templates.schema import Campaign, RenderedWorkflow, Step, TemplateSpec
from epic_wfms.templates.tags import TagCatalogue, default_tag_dir

# A string that is one {{ expression }} keeps its native type (a list stays a list, 4 an
# int); any other string renders as text.
_NATIVE = NativeTemplateSandbox()
_TEXT = TemplateSandbox()
_ONE_EXPRESSION = re.compile(r"^\s*\{\{(?:(?!\}\}|\{\{).)*\}\}\s*$", re.DOTALL)
_SAFE = re.compile(r"[^a-z0-9]+")


class _Expr:
    """A compiled Jinja2 string, remembered with its source for error messages."""

    __slots__ = ("native", "source", "template")

    def __init__(self, source: str, where: str, native_ok: bool = True) -> None:
        self.source = source
        self.native = (native_ok and bool(_ONE_EXPRESSION.match(source.strip()))
                       and source == source.strip())
        env = _NATIVE if self.native else _TEXT
        try:
            refuse_statements(env, source)
            self.template = env.from_string(source)
        except TemplateSyntaxError as error:
            raise TemplateError(f"{where}: Jinja2 syntax error in {source!r}", str(error),
                                "fix the expression ({{ name }} for a parameter)") from None
        except SecurityError as error:
            raise TemplateError(f"{where}: {source!r} is refused", str(error),
                                "templates hold expressions only (docs/templates.md)") from None

    def render(self, context: Mapping[str, Any]) -> Any:
        """Render against ``context`` without copying it (jinja's shared context)."""
        template = self.template
        parts = template.root_render_func(template.new_context(context, shared=True))
        if self.native:  # one expression: its value as it is, no literal_eval round trip
            values = list(parts)
            value = values[0] if len(values) == 1 else template.environment.concat(values)
            for item in (value, *(value if isinstance(value, list | tuple) else ())):
                if isinstance(item, Undefined):  # a bare {{ misspelt }} is not rendered text
                    item._fail_with_undefined_error()
            return check_result(value)
        return check_result(template.environment.concat(parts))


def _compile(node: Any, where: str) -> Any:
    if isinstance(node, str):
        return _Expr(node, where) if ("{{" in node or "{%" in node) else node
    if isinstance(node, dict):
        return {k: _compile(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_compile(v, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def _compile_step(raw: dict[str, Any], where: str) -> Any:
    """A step with every value in its commands shell-quoted for its place (commands.py)."""
    step = _compile(raw, where)
    for path in commands.COMMAND_FIELDS:
        holder = step
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(raw_text := _source(holder.get(path[-1])),
                                                   str):
            place = f"{where}.{'.'.join(path)}"
            command = _Expr(commands.guard(raw_text, place), place, native_ok=False)
            command.source = raw_text  # messages quote what the author wrote
            holder[path[-1]] = command
    return step


def _source(node: Any) -> Any:
    return node.source if isinstance(node, _Expr) else node


def _evaluate(node: Any, context: Mapping[str, Any], where: str) -> Any:
    if isinstance(node, _Expr):
        try:
            value = node.render(context)
        except UndefinedError as error:
            name = re.search(r"'([^']+)' is undefined", str(error))
            hint = closest(name.group(1), sorted(context)) if name else None
            raise TemplateError(f"{where}: {error} in {node.source!r}",
                                "templates may use only their parameters, tag, campaign, "
                                "ds(), item and index",
                                f"did you mean {hint}?" if hint else
                                "declare the parameter under 'parameters'") from None
        except SecurityError as error:
            raise TemplateError(f"{where}: {node.source!r} is refused", str(error),
                                "templates are evaluated with bounded sizes "
                                "(docs/templates.md#sandbox)") from None
        except Exception as error:  # a Jinja2 filter or expression that fails
            raise TemplateError(f"{where}: cannot evaluate {node.source!r}", str(error),
                                "fix the expression") from None
        return value
    if isinstance(node, dict):
        return {k: _evaluate(v, context, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_evaluate(v, context, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def _suffix(item: Any, index: int) -> str:
    if isinstance(item, float) and item.is_integer():
        item = int(item)
    text = _SAFE.sub("_", str(item).lower()).strip("_")
    return text if text and len(text) <= 24 else f"{index:04d}"


class CompiledTemplate:
    """A template with every expression compiled: render it many times cheaply."""

    def __init__(self, spec: TemplateSpec, template_hash: str, tags: TagCatalogue) -> None:
        self.spec, self.template_hash, self.tags = spec, template_hash, tags
        self.campaign = _compile(spec.campaign, f"{spec.template}: campaign")
        self.steps = []
        for index, raw in enumerate(spec.steps):
            name = raw.get("name", f"#{index}")
            foreach = raw.get("foreach")
            if foreach is not None and spec.parameters.get(foreach, None) is None:
                raise TemplateError(f"{spec.template}: step {name} has foreach: {foreach!r}",
                                    "foreach names a parameter of type list",
                                    _hint(foreach, list(spec.parameters)))
            self.steps.append((name, foreach,
                               _compile_step(raw, f"{spec.template}: step {name}")))

    def render(self, values: Mapping[str, Any]) -> RenderedWorkflow:
        spec = self.spec
        params = resolve_parameters(spec.parameters, values, spec.template)
        tag_values, tag_defs = {}, {}
        for name, pspec in spec.parameters.items():
            if pspec.type == "tag" and params[name] is not None:
                tag_values[pspec.tag_kind] = params[name]
                tag_defs[pspec.tag_kind] = self.tags.resolve(params[name], pspec.tag_kind)
        context: dict[str, Any] = {**_NATIVE.globals, **params, "tag": tag_defs}
        campaign = _validated(Campaign, _evaluate(self.campaign, context,
                                                  f"{spec.template}: campaign"),
                              f"{spec.template}: campaign")
        context["campaign"] = campaign.model_dump()
        context["ds"] = lambda step, file: dataset_name(campaign, tag_values, step, file)
        steps, scatter = self._render_steps(context, params)
        _resolve_links(spec.template, steps, scatter)
        workflow = RenderedWorkflow(
            template=spec.template, template_version=spec.version,
            template_hash=self.template_hash, use_case=spec.use_case, parameters=params,
            tags=tag_defs, campaign=campaign, steps=_topological(spec.template, steps))
        for step in workflow.steps:
            for output in step.outputs:
                output.dataset = dataset_name(campaign, tag_values, step.name, output.file)
        _resolve_inputs(spec.template, workflow.steps, scatter)
        workflow.rendered_hash = rendered_hash(workflow)
        return workflow

    def _render_steps(self, context: dict[str, Any], params: dict[str, Any]
                      ) -> tuple[list[Step], dict[str, tuple[str, int]]]:
        steps: list[Step] = []
        scatter: dict[str, tuple[str, int]] = {}  # instance name -> (step, index)
        for name, foreach, compiled in self.steps:
            where = f"{self.spec.template}: step {name}"
            items = [(None, None)] if foreach is None else list(enumerate(params[foreach]))
            for index, item in items:
                local = context if foreach is None else {**context, "item": item,
                                                         "index": index}
                data = _evaluate(compiled, local, where)
                if foreach is not None:
                    suffix = _suffix(item, index)
                    data["name"] = f"{name}_{suffix}"
                    for output in data.get("outputs", []):
                        output["datatype"] = f"{output.get('datatype')}_{suffix}"
                    scatter[data["name"]] = (name, index)
                step = _validated(Step, data, where)
                if step.enabled:
                    steps.append(step)
        return steps, scatter


def _hint(name: str, choices: list[str]) -> str:
    suggestion = closest(name, choices)
    return f"did you mean {suggestion}?" if suggestion else "known: " + ", ".join(choices)


def _validated(model: type, data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise TemplateError(f"{where}: rendered {model.__name__.lower()} is invalid",
                            describe_validation_error(error),
                            "fix the template (docs/templates.md lists the fields) or the "
                            "parameters that feed it") from None


class _Scatter:
    """Scattered step instances by base name and index, for O(1) reference lookups."""

    def __init__(self, scatter: dict[str, tuple[str, int]], names: set[str]) -> None:
        self.of = scatter
        self.names = names
        self.by_base: dict[str, list[str]] = {}
        self.by_index: dict[tuple[str, int], str] = {}
        for name, (base, index) in scatter.items():
            if name in names:
                self.by_base.setdefault(base, []).append(name)
                self.by_index[(base, index)] = name

    def instances(self, ref: str, current: str) -> list[str]:
        """Step names a reference means: the step, or its scattered instances (the one with
        the same index when the referring step is scattered over the same list)."""
        if ref in self.names:
            return [ref]
        mine = self.of.get(current)
        if mine and (ref, mine[1]) in self.by_index:
            return [self.by_index[(ref, mine[1])]]
        return sorted(self.by_base.get(ref, []))


def _resolve_links(template: str, steps: list[Step], scatter: dict[str, tuple[str, int]]) -> None:
    names = {s.name for s in steps}
    index = _Scatter(scatter, names)
    by_name = {s.name: s for s in steps}
    for step in steps:
        depends: list[str] = []
        for ref in [*step.after, *(i.from_ for i in step.inputs if i.from_)]:
            found = index.instances(ref, step.name)
            if not found:
                raise TemplateError(f"{template}: step {step.name} depends on {ref!r}",
                                    "no enabled step of that name", _hint(ref, _bases(index)))
            depends += [n for n in found if n not in depends]
        for cond in step.when:
            if cond.kind == "input_ready" and ":" in cond.subject:
                continue  # an external dataset
            found = index.instances(cond.subject, step.name)
            if not found:
                raise TemplateError(f"{template}: step {step.name}: condition "
                                    f"{cond.kind} on {cond.subject!r}",
                                    "names no enabled step (or scope:dataset)",
                                    _hint(cond.subject, _bases(index)))
            for name in found:
                if cond.kind == "upstream_validated" and not by_name[name].validate_cmd:
                    raise TemplateError(f"{template}: step {step.name} waits for {name} to be "
                                        "validated", f"{name} has no 'validate' command",
                                        f"add validate: to step {name}")
                if cond.kind == "calibration_ready" and not by_name[name].loop:
                    raise TemplateError(f"{template}: step {step.name} waits for calibration "
                                        f"{name}", f"{name} is not a calibration loop",
                                        f"add loop: (check, max_iterations) to step {name}")
            depends += [n for n in found if n not in depends]
        step.depends_on = depends


def _bases(index: _Scatter) -> list[str]:
    return sorted(index.names | set(index.by_base))


def _resolve_inputs(template: str, steps: list[Step], scatter: dict[str, tuple[str, int]]
                    ) -> None:
    by_name = {s.name: s for s in steps}
    index = _Scatter(scatter, set(by_name))
    for step in steps:
        for item in step.inputs:
            if item.dataset:
                item.datasets = [item.dataset]
                continue
            datasets = []
            for producer in index.instances(item.from_, step.name):
                outs = by_name[producer].outputs
                if item.datatype:
                    outs = [o for o in outs if o.datatype.startswith(item.datatype)]
                    if not outs:
                        raise TemplateError(
                            f"{template}: step {step.name} reads {item.datatype!r} from "
                            f"{producer}", f"{producer} writes "
                            + ", ".join(o.datatype for o in by_name[producer].outputs),
                            "name one of its datatypes")
                datasets.append(outs[0].dataset)
            item.datasets = datasets


def _topological(template: str, steps: list[Step]) -> list[Step]:
    """Steps in dependency order, ties kept in template order; cycles refused."""
    remaining = {s.name: s for s in steps}
    ordered: list[Step] = []
    done: set[str] = set()
    while remaining:
        ready = [s for s in remaining.values() if set(s.depends_on) <= done]
        if not ready:
            cycle = ", ".join(sorted(remaining))
            raise TemplateError(f"{template}: the steps {cycle} depend on each other",
                                "a workflow is a DAG (loops are written with 'loop:')",
                                "remove one of the dependencies")
        for step in ready:
            ordered.append(step)
            done.add(step.name)
            del remaining[step.name]
    return ordered


def rendered_hash(workflow: RenderedWorkflow) -> str:
    body = workflow.model_dump(mode="json", by_alias=True, exclude={"rendered_hash"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


_COMPILED: dict[tuple[Path, str], CompiledTemplate] = {}


def compile_template(library: TemplateLibrary, name: str,
                     tags: TagCatalogue | None = None) -> CompiledTemplate:
    """The compiled template, cached per file and content hash."""
    spec, digest = library.load(name)
    key = (library.path(name).resolve(), digest)
    if tags is not None:
        return CompiledTemplate(spec, digest, tags)
    if key not in _COMPILED:
        _COMPILED[key] = CompiledTemplate(
            spec, digest, TagCatalogue(default_tag_dir(library.directory)))
    return _COMPILED[key]


def render_template(name: str, values: Mapping[str, Any] | None = None,
                    library: TemplateLibrary | None = None,
                    tags: TagCatalogue | None = None) -> RenderedWorkflow:
    """Render template ``name`` (or a file path) with parameter ``values``."""
    library = library or TemplateLibrary()
    return compile_template(library, name, tags).render(values or {})


def example_values(spec: TemplateSpec) -> dict[str, Any]:
    """Values for `template validate`: each required parameter's example."""
    values = {}
    for name, pspec in spec.parameters.items():
        if pspec.required:
            if pspec.example is None:
                raise TemplateError(f"{spec.template}: required parameter {name} has no example",
                                    "validate renders the template with examples",
                                    f"add example: to parameter {name}")
            values[name] = pspec.example
    return values
