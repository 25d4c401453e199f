"""ePIC production tags (physics p, event generation e, simulation s, reconstruction r,
background k) resolved from the catalogue in ``templates/tags/<kind>.yaml``.

A tag names a frozen configuration: once used in production its definition may not change.
Two guards enforce it: a catalogue entry may carry ``frozen: sha256:<hash>`` (written when
the tag was first used in production), and the store remembers the content hash of every
tag a production submission used (``production_tag_usage``). Either mismatch is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from epic_wfms.templates.errors import TagError, TagImmutableError
from epic_wfms.templates.params import closest
from epic_wfms.templates.schema import TAG_KIND_NAMES, TAG_KINDS
from epic_wfms.yamlfile import read_yaml_mapping

TAG_PATTERN = re.compile(r"^(?P<kind>[pesrk])(?P<number>\d{4,})$")
UsageLookup = Callable[[str], str | None]  # tag -> content hash recorded at first use


def content_hash(definition: dict[str, Any]) -> str:
    """sha256 of a tag's definition without its bookkeeping fields."""
    body = {k: v for k, v in definition.items() if k not in ("frozen", "description")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class TagCatalogue:
    """All tags of one catalogue directory; ``resolve`` checks immutability."""

    def __init__(self, directory: Path, used: UsageLookup | None = None) -> None:
        self.directory = Path(directory)
        self._used = used
        self._tags: dict[str, dict[str, Any]] = {}
        for kind in TAG_KINDS:
            path = self.directory / f"{kind}.yaml"
            entries = read_yaml_mapping(path, TagError, "tag catalogue",
                                        "a tag catalogue maps tags to their settings"
                                        ) if path.exists() else None
            for tag, definition in (entries or {}).items():
                match = TAG_PATTERN.match(str(tag))
                if not match or match["kind"] != kind:
                    raise TagError(f"tag {tag!r} in {path.name} is malformed",
                                   f"{TAG_KIND_NAMES[kind]} tags are '{kind}' followed by at "
                                   "least four digits", f"rename it, e.g. {kind}1001")
                if not isinstance(definition, dict):
                    raise TagError(f"tag {tag} in {path.name} has no definition",
                                   "a tag maps to its settings", "give its key: value settings")
                self._tags[str(tag)] = definition

    def known(self, kind: str) -> list[str]:
        return sorted(t for t in self._tags if t.startswith(kind))

    def resolve(self, tag: str, kind: str | None = None) -> dict[str, Any]:
        """The tag's settings (plus ``tag`` and ``content_hash``), refusing changed used tags."""
        match = TAG_PATTERN.match(tag)
        if kind and (not match or match["kind"] != kind):
            raise TagError(f"{tag!r} is not a {TAG_KIND_NAMES[kind]} tag",
                           f"{TAG_KIND_NAMES[kind]} tags look like {kind}1001",
                           _did_you_mean(tag, self.known(kind)))
        if tag not in self._tags:
            raise TagError(f"unknown tag {tag!r}",
                           f"it is not in the catalogue {self.directory}",
                           _did_you_mean(tag, self.known(tag[:1] or "p")))
        definition = self._tags[tag]
        digest = content_hash(definition)
        frozen = str(definition.get("frozen", "")).removeprefix("sha256:")
        if frozen and frozen != digest:
            raise TagImmutableError(
                f"tag {tag} was frozen when first used in production and its definition changed",
                f"catalogue hash {digest[:12]} differs from frozen {frozen[:12]}",
                "restore its settings and define a new tag for the new configuration")
        recorded = self._used(tag) if self._used else None
        if recorded and recorded != digest:
            raise TagImmutableError(
                f"tag {tag} was used in production and its definition changed",
                f"the store recorded content {recorded[:12]}, the catalogue now says "
                f"{digest[:12]}",
                "restore its settings and define a new tag for the new configuration")
        return {**{k: v for k, v in definition.items() if k != "frozen"},
                "tag": tag, "content_hash": digest}


def _did_you_mean(tag: str, known: list[str]) -> str:
    suggestion = closest(tag, known)
    if suggestion:
        return f"did you mean {suggestion}?"
    return "known: " + (", ".join(known) or "none") + " (templates/tags/)"


def default_tag_dir(template_dir: Path) -> Path:
    return Path(template_dir) / "tags"
