"""The one rule that names every dataset a template produces (docs/templates.md).

    task     <prefix>.<campaign>[.<selector>].<config>.<step>
    dataset  <scope>:<task>_<file>

scope/prefix  ``epic``/``epic`` for production, ``user.<user>``/``user.<user>`` for analysis
campaign      the campaign name, e.g. ``26.11.0``
selector      optional data selection, e.g. ``swf.000123`` (a run) for streaming data
config        the production tags in the order p, e, s, r, k joined by ``_``
              (``p1001_e1001_s1002_r1003_k1001``), or ``notag`` when a template uses none
step          the step name (scattered steps carry their item, e.g. ``npsim_10``)
file          the output file name the payload writes (``sim.edm4hep.root``)

The dataset is exactly the output container PanDA's prun makes for the task (``<task>_<file>/``),
so the names agree on every target.
"""

from __future__ import annotations

import re

from epic_wfms.model.naming import SCOPE
from epic_wfms.templates.errors import TemplateError
from epic_wfms.templates.schema import TAG_KINDS, Campaign

_VALID = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_NAME = 255


def config_string(tags: dict[str, str]) -> str:
    """``{'s': 's1002', 'p': 'p1001'} -> 'p1001_s1002'`` (kind order p, e, s, r, k)."""
    parts = [tags[k] for k in TAG_KINDS if tags.get(k)]
    return "_".join(parts) or "notag"


def scope_and_prefix(campaign: Campaign) -> tuple[str, str]:
    if campaign.activity == "analysis":
        owner = f"user.{campaign.user}"
        return owner, owner
    return SCOPE, SCOPE


def task_name(campaign: Campaign, tags: dict[str, str], step: str) -> str:
    _, prefix = scope_and_prefix(campaign)
    parts = [prefix, campaign.name]
    if campaign.selector:
        parts.append(campaign.selector)
    parts += [config_string(tags), step]
    return ".".join(parts)


def dataset_name(campaign: Campaign, tags: dict[str, str], step: str, file: str) -> str:
    scope, _ = scope_and_prefix(campaign)
    name = f"{task_name(campaign, tags, step)}_{file}"
    if not _VALID.match(name) or len(name) > MAX_NAME:
        raise TemplateError(f"dataset name {name!r} breaks the naming rule",
                            f"names use [A-Za-z0-9_.-] and at most {MAX_NAME} characters",
                            "shorten the campaign name, the step name or the file name")
    return f"{scope}:{name}"
