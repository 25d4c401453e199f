"""ePIC's Adder plug-in: a finished job's outputs registered in Rucio, in the task's datasets.

The PanDA server's Adder (``add_main``) runs the VO's plug-in for every job a pilot reported
(``adder_plugins = epic:epic_panda.adder:EpicAdderPlugin`` in ``panda_server.cfg``). The pilot
has already put each output at the queue's storage (RSE), at Rucio's deterministic path
(copy tool ``mv`` with the queue's ``mv_final_destination``); this registers, per output and
log file the job produced, its replica at that RSE (size, adler32, GUID from the pilot's
report) and attaches it to its dataset (``FileSpec.dataset``: the task's output or log
dataset, created open if it does not exist yet; a dataset named without scope is in ePIC's
scope, a trailing ``/`` of prun's container names dropped, as JEDI's naming has it), in one
Rucio call per dataset
(``add_files_to_datasets``, duplicates ignored: a retried registration is harmless).

Outcomes, as the Adder expects them: succeeded; temporary (Rucio unreachable or refusing for
now: the Adder tries again on its next cycle); fatal (the job's own data is wrong: no RSE for
its queue, a checksum that is not adler32) - the job fails with the reason in ``ddmErrorDiag``.

Rucio is reached with the client's own configuration (``RUCIO_CONFIG``: host, account, auth).
"""

from __future__ import annotations

import contextlib
import traceback

from pandaserver.dataservice import ErrorCode
from pandaserver.dataservice.adder_plugin_base import AdderPluginBase

SKIPPED = ("failed", "nooutput", "skipped")
# a dataset named without scope is in ePIC's scope, as JEDI's naming has it
# (epic_jedi.naming.rucio_scope): prun-format tasks (templates) name their outputs so
DEFAULT_SCOPE = "epic"


def split_did(name: str, default_scope: str | None) -> tuple[str | None, str]:
    """``scope:name`` -> (scope, name); a bare name is in ``default_scope``."""
    scope, sep, rest = name.partition(":")
    return (scope, rest) if sep else (default_scope, name)


def _set(value: str | None) -> str | None:
    """A JobSpec/FileSpec attribute, None where PanDA stores the string ``NULL``."""
    return None if value in (None, "", "NULL") else value


def adler32_of(checksum: str | None) -> str | None:
    """The pilot reports ``ad:<8 hex>``; Rucio wants the 8 hex digits."""
    if not checksum or checksum == "NULL":
        return None
    kind, sep, value = checksum.partition(":")
    if not sep:
        return checksum
    if kind != "ad":
        raise ValueError(f"checksum {checksum!r} is not adler32 (ad:...)")
    return value


class EpicAdderPlugin(AdderPluginBase):
    """Register a job's outputs in Rucio (see the module docstring)."""

    def __init__(self, job, **params) -> None:
        AdderPluginBase.__init__(self, job, params)

    def execute(self) -> None:
        try:
            by_dataset = self._files_by_dataset()
        except ValueError as error:
            self._fail(str(error), fatal=True)
            return
        if not by_dataset:
            self.result.set_succeeded()
            return
        rse = self._rse()
        if rse is None:
            self._fail(f"queue {self.job.computingSite} has no output storage (ddm_output)",
                       fatal=True)
            return
        try:
            self._register(rse, by_dataset)
        except Exception as error:  # Rucio down or refusing: the Adder retries
            self.logger.error(f"registration in Rucio failed: {error} {traceback.format_exc()}")
            self._fail(f"Rucio: {type(error).__name__}: {error} (registering "
                       f"{sorted(by_dataset.items())} at {rse})", fatal=False)
            return
        self.logger.debug(f"registered at {rse}: {sorted(by_dataset)}")
        self.result.set_succeeded()

    def _files_by_dataset(self) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for spec in self.job.Files:
            if spec.type not in ("output", "log") or spec.status in SKIPPED:
                continue
            if spec.destinationSE == "local":
                continue
            # a file is in its dataset's scope unless the job names another
            ds_scope, _ = split_did(spec.dataset, DEFAULT_SCOPE)
            scope, name = split_did(spec.lfn, _set(spec.scope) or ds_scope)
            if scope is None:
                raise ValueError(f"{spec.lfn} has no Rucio scope (dataset {spec.dataset})")
            did = {"scope": scope, "name": name, "bytes": int(spec.fsize or 0),
                   "adler32": adler32_of(_set(spec.checksum))}
            if _set(spec.GUID):
                did["meta"] = {"guid": spec.GUID}
            found.setdefault(spec.dataset, []).append(did)
        return found

    def _rse(self) -> str | None:
        site = self.siteMapper.getSite(self.job.computingSite)
        return (getattr(site, "ddm_output", None) or {}).get("default") or None

    def _register(self, rse: str, by_dataset: dict[str, list[dict]]) -> None:
        # a dataset named without scope is in its files' scope
        from rucio.client import Client
        from rucio.common.exception import DataIdentifierAlreadyExists

        client = Client()
        attachments = []
        for dataset, dids in by_dataset.items():
            scope, name = split_did(dataset, dids[0]["scope"])
            name = name.rstrip("/")  # prun's output container names end with '/'
            with contextlib.suppress(DataIdentifierAlreadyExists):
                client.add_dataset(scope, name)
            attachments.append({"scope": scope, "name": name, "rse": rse,
                                "dids": [{k: v for k, v in d.items() if v is not None}
                                         for d in dids]})
        client.add_files_to_datasets(attachments, ignore_duplicate=True)

    def _fail(self, why: str, fatal: bool) -> None:
        self.job.ddmErrorCode = ErrorCode.EC_Adder
        self.job.ddmErrorDiag = f"could not register outputs in Rucio: {why}"[:250]
        if fatal:
            self.result.set_fatal()
        else:
            self.result.set_temporary()
