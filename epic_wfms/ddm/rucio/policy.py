"""The one DID naming rule and rule policy of ePIC streaming data in Rucio (docs/rucio.md).

Names are those of ``epic_wfms.model.naming``; the scope is the configured ePIC scope
(default ``epic``). Datasets of a run are grouped in one container per run period:

    file         <scope>:swf.<run:06d>.<seq:06d>.stf
    run dataset  <scope>:swf.<run:06d>.run           (testbed: group.daq:swf.<run>.run)
    E1 subset    <scope>:swf.<run:06d>.<E1 site>     (testbed: group.daq:run.<run>.<site>)
    container    <scope>:swf.<period>.period         (every dataset of the period's runs)
"""

from __future__ import annotations

import re
from typing import Any

from epic_wfms.ddm.interface import DID
from epic_wfms.model import naming

# ePIC activity -> Rucio activity (the generic schema accepts only its own list).
ACTIVITIES: dict[str, str] = {
    "Raw Archival": "T0 Tape",
    "Express": "Express",
    "Merge Input": "Production Input",
    "Output Export": "Production Output",
    "Staging": "Staging",
    "default": "User Subscriptions",
}
ARCHIVE_ACTIVITIES = frozenset({"Raw Archival"})

_RUN_DATASET = re.compile(r"^swf\.(?P<run>\d{6})\.(?P<kind>[A-Za-z0-9_]+)$")
_TESTBED_RUN = re.compile(r"^(?P<scope>[\w.]+):swf\.(?P<run>\d+)\.run$")
_TESTBED_SITE = re.compile(r"^(?P<scope>[\w.]+):run\.(?P<run>\d+)\.(?P<site>\w+)$")

# DID metadata keys Rucio keeps in DID columns (searchable on any database); the rest go to
# the JSON metadata plugin, which needs PostgreSQL (or Oracle/MySQL) under the server.
COLUMN_META = frozenset({"run_number", "datatype", "stream_name", "events", "project",
                         "campaign", "version", "provenance", "task_id", "panda_id"})


def rucio_activity(activity: str) -> str:
    return ACTIVITIES.get(activity, activity)


def period_container(scope: str, period: str) -> DID:
    return DID(scope, f"swf.{period}.period")


def run_of_dataset(name: str) -> int | None:
    """Run number of a run or E1-subset dataset name, None for anything else."""
    match = _RUN_DATASET.match(name)
    return int(match["run"]) if match else None


def from_testbed(did: str, scope: str = naming.SCOPE) -> DID:
    """Map a testbed dataset name (``group.daq:swf.<run>.run``) to ours."""
    if match := _TESTBED_RUN.match(did):
        return DID(scope, naming.run_dataset(int(match["run"])))
    if match := _TESTBED_SITE.match(did):
        return DID(scope, naming.site_dataset(int(match["run"]), match["site"]))
    raise ValueError(
        f"{did!r} is not a testbed run dataset name; expected 'group.daq:swf.<run>.run' or "
        "'group.daq:run.<run>.<site>'"
    )


def file_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """STF metadata as set on the file DID: datatype column plus the caller's keys."""
    return {"datatype": "STF" if meta.get("kind") is None else str(meta["kind"]).upper(),
            **{k: v for k, v in meta.items() if v is not None and k != "kind"}}
