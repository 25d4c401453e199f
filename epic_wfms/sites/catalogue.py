"""Load ``site_configs/*.yaml`` into a validated :class:`Catalogue`.

Errors name the file, the field (``queues[1].arch``) and what is allowed there, so an
operator can fix a site file without reading the code.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from epic_wfms.errors import ConfigurationError
from epic_wfms.sites.models import Queue, Site
from epic_wfms.yamlfile import read_yaml_mapping

# the ePIC catalogue shipped with epic-wfms (package data, so an installed wheel has it too)
DEFAULT_SITE_DIR = Path(__file__).resolve().parent / "site_configs"


class CatalogueError(ConfigurationError):
    """A site file (or the set of them) that cannot be used."""


@dataclass(frozen=True)
class Catalogue:
    """All sites, by name, with the file each came from."""

    sites: dict[str, Site]
    files: dict[str, Path]

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites.values())

    def site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise CatalogueError(
                f"unknown site {name!r}", f"the catalogue has {sorted(self.sites)}",
                "use `epic-wfms sites list` to see the site names",
            ) from None

    def queues(self) -> Iterator[tuple[Site, Queue]]:
        for site in self:
            for queue in site.queues:
                yield site, queue

    @property
    def cores(self) -> int:
        return sum(site.cores for site in self)


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Read every ``*.yaml`` in ``directory`` (default: the shipped catalogue)."""
    directory = Path(directory or DEFAULT_SITE_DIR)
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise CatalogueError(
            f"no site files in {directory}", "the catalogue needs at least one <site>.yaml",
            "point --sites at the site_configs/ folder",
        )
    sites: dict[str, Site] = {}
    files: dict[str, Path] = {}
    for path in paths:
        site = load_site_file(path)
        if site.name in sites:
            raise CatalogueError(
                f"{path}: name: site {site.name} is also defined in {files[site.name]}",
                "each site has exactly one file", "rename or remove one of the two files",
            )
        sites[site.name], files[site.name] = site, path
    catalogue = Catalogue(sites, files)
    _check_cross_references(catalogue)
    return catalogue


def load_site_file(path: Path) -> Site:
    data = read_yaml_mapping(path, CatalogueError, "site file",
                             "a site file is one mapping: see docs/sites.md for the schema")
    try:
        return Site.model_validate(data)
    except ValidationError as error:
        raise CatalogueError(
            f"{path}: invalid site file", describe_site_errors(error),
            "correct the named fields; docs/sites.md lists every field",
        ) from error


def describe_site_errors(error: ValidationError) -> str:
    """``field: problem (allowed: ...)`` for each error, fields written as in the YAML."""
    parts = []
    for item in error.errors():
        loc = item["loc"]
        where = _field_path(loc) or "<site>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = sorted(_model_at(Site, loc[:-1]).model_fields)
            message = f"unknown field; allowed fields here: {', '.join(allowed)}"
        elif item["type"] == "missing":
            message = "required field is missing"
        elif "input" in item and item["type"] not in ("model_type", "value_error"):
            message += f" (got {item['input']!r})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _field_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The nested model class a location points into (to list its allowed fields)."""
    for step in loc:
        if isinstance(step, int) or step not in model.model_fields:
            continue
        model = _inner_model(model.model_fields[step].annotation) or model
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            if found := _inner_model(arg):
                return found
    return None


def _check_cross_references(catalogue: Catalogue) -> None:
    """Links point at known sites; RSE and queue names are unique across the fabric."""
    seen_rse: dict[str, str] = {}
    seen_queue: dict[str, str] = {}
    for site in catalogue:
        path = catalogue.files[site.name]
        for i, link in enumerate(site.links):
            if link.to not in catalogue.sites or link.to == site.name:
                raise CatalogueError(
                    f"{path}: links[{i}].to: unknown site {link.to!r}",
                    f"allowed: the other sites {sorted(set(catalogue.sites) - {site.name})}",
                    "fix the site name or add that site's file",
                )
        for i, store in enumerate(site.storage):
            if store.rse in seen_rse:
                raise CatalogueError(
                    f"{path}: storage[{i}].rse: {store.rse} is already used by "
                    f"{seen_rse[store.rse]}",
                    "an RSE belongs to one site", "give the RSE a unique name",
                )
            seen_rse[store.rse] = site.name
        for i, queue in enumerate(site.queues):
            if queue.name in seen_queue:
                raise CatalogueError(
                    f"{path}: queues[{i}].name: {queue.name} is already a queue of "
                    f"{seen_queue[queue.name]}", "PanDA queue names are unique",
                    "rename the queue",
                )
            seen_queue[queue.name] = site.name


def check_against_config(catalogue: Catalogue, sites: list[Any],
                         panda_queues: dict[str, str] | None = None) -> list[str]:
    """Problems between the catalogue and the streaming configuration's E1 sites (config.py):
    each is an E1 of the catalogue with a streaming queue (the PanDA queue its prompt
    processing runs at, ``wfms.panda.queues``) and the configured RSEs."""
    problems = []
    for configured in sites:
        site = catalogue.sites.get(configured.name)
        if site is None:
            problems.append(f"configured site {configured.name} is not in the catalogue")
            continue
        streaming = [q.name for q in site.queues if "streaming" in q.workflow_classes]
        if site.echelon != "E1" or not streaming:
            problems.append(f"configured site {configured.name} is not an E1 with a streaming "
                            f"queue in {catalogue.files[site.name].name}")
        elif panda_queues and panda_queues.get(site.name, streaming[0]) != streaming[0]:
            problems.append(f"{site.name}: wfms.panda.queues says "
                            f"{panda_queues[site.name]}, the catalogue's streaming queue is "
                            f"{streaming[0]}")
        for kind, rse in (("DISK", configured.disk_rse), ("TAPE", configured.tape_rse)):
            if rse not in {s.rse for s in site.storage if s.type == kind}:
                problems.append(f"{configured.name}: configured {kind} RSE {rse} is not in "
                                f"{catalogue.files[site.name].name}")
    return problems
