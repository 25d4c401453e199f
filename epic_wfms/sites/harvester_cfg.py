"""Merge settings into a ``panda_harvester.cfg`` the way Harvester reads it.

A site admin starts from Harvester's own template (``panda_harvester.cfg.rpmnew.template``,
installed under ``<venv>/etc/panda``) or their running ``panda_harvester.cfg`` and merges
the per-site fragment ``epic-wfms sites harvester-config`` generates (``[master]
harvester_id``, ``[qconf]``, submitter and monitor intervals). Harvester reads the file with
``LiveConfigParser``: a ``ConfigParser`` that keeps the case of keys (``checkInterval``) and
splits multi-line values into lists (``queueList``); this merge keeps both, and refuses text
that Harvester itself could not read.
"""

from __future__ import annotations

import configparser
import io
from collections.abc import Mapping

from epic_wfms.errors import EpicWfmsError

#: a layer: cfg text, or {section: {key: value}} where a value of None removes the key
Layer = str | Mapping[str, Mapping[str, object]]


class HarvesterCfgError(EpicWfmsError):
    """A panda_harvester.cfg (or a fragment) cannot be read as Harvester reads it."""


def _parser() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # Harvester's LiveConfigParser keeps the case of keys
    return parser


def _read(text: str, what: str) -> configparser.ConfigParser:
    parser = _parser()
    try:
        parser.read_string(text, source=what)
    except configparser.Error as error:
        raise HarvesterCfgError(f"{what} is not a valid panda_harvester.cfg", str(error),
                                "fix the line named above (INI syntax, one value per key)"
                                ) from error
    return parser


def _value(value: object) -> str:
    if isinstance(value, (list, tuple)):  # Harvester reads a multi-line value as a list
        return "\n" + "\n".join(str(v) for v in value)
    return str(value)


def merge_cfg(base: str, *layers: Layer, base_name: str = "panda_harvester.cfg") -> str:
    """``base`` with every layer applied in order: a later layer wins per key."""
    merged = _read(base, base_name)
    for n, layer in enumerate(layers, start=1):
        if isinstance(layer, str):
            fragment = _read(layer, f"fragment {n}")
            layer = {s: dict(fragment.items(s)) for s in fragment.sections()}
        for section, values in layer.items():
            if not merged.has_section(section):
                merged.add_section(section)
            for key, value in values.items():
                if value is None:
                    merged.remove_option(section, key)
                else:
                    merged.set(section, key, _value(value))
    out = io.StringIO()
    merged.write(out)
    return out.getvalue()


def cfg_sections(text: str) -> dict[str, dict[str, str]]:
    """The cfg as {section: {key: raw value}} (to check what a merge produced)."""
    parsed = _read(text, "panda_harvester.cfg")
    return {s: dict(parsed.items(s)) for s in parsed.sections()}
