"""Reconciliation: compare the store's view of a run's data with the DDM's and report every
difference as an integrity issue (kind ``ddm_mismatch``), once per difference.

Checked per run: each validated STF is attached to the run dataset with the store's adler32,
each archived STF has an available replica on every E1 tape RSE, nothing is in the run
dataset that the store does not know, and a finished run's dataset is closed.
"""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.config import Config
from epic_wfms.ddm.interface import DID, DataManagement
from epic_wfms.lifecycle.run import RunStatus
from epic_wfms.lifecycle.stf import ArchiveStatus, Validation
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.store.integrity import report_issue
from epic_wfms.store.schema import IntegrityIssueRecord, RunRecord, StfRecord

KIND = "ddm_mismatch"


def differences(db: Database, ddm: DataManagement, config: Config, run_number: int) -> list[
        tuple[str | None, str]]:
    """(filename or None, what differs) for one run."""
    dataset = DID(naming.SCOPE, naming.run_dataset(run_number))
    view = ddm.dataset_view(dataset)
    with db.session() as session:
        stfs = session.scalars(select(StfRecord).where(
            StfRecord.run_number == run_number, StfRecord.validation == Validation.OK)).all()
        run = session.get(RunRecord, run_number)
    tapes = [site.tape_rse for site in config.sites]
    found: list[tuple[str | None, str]] = []
    for stf in stfs:
        entry = view.get(stf.filename)
        if entry is None:
            found.append((stf.filename, f"registered in the store but not in DDM dataset "
                                        f"{dataset}"))
            continue
        if entry.adler32 is not None and entry.adler32 != stf.adler32:
            found.append((stf.filename, f"checksum differs: store ad:{stf.adler32}, "
                                        f"DDM ad:{entry.adler32}"))
        if stf.archive_status == ArchiveStatus.ARCHIVED:
            missing = [t for t in tapes if entry.states.get(t) != "A"]
            if missing:
                found.append((stf.filename, f"archived in the store but no available replica "
                                            f"on {', '.join(missing)} in DDM"))
    known = {stf.filename for stf in stfs}
    found += [(name, f"in DDM dataset {dataset} but unknown to the store")
              for name in sorted(set(view) - known)]
    if run is not None and run.status == RunStatus.FINISHED and view and ddm.is_open(dataset):
        found.append((None, f"run {run_number} is finished but DDM dataset {dataset} is open"))
    return found


def reconcile_run(db: Database, ddm: DataManagement, config: Config, run_number: int) -> int:
    """Report the run's differences not already open; returns how many are open now."""
    found = differences(db, ddm, config, run_number)
    with db.session() as session:
        reported = {(i.filename, i.detail) for i in session.scalars(select(IntegrityIssueRecord)
                    .where(IntegrityIssueRecord.kind == KIND,
                           IntegrityIssueRecord.run_number == run_number,
                           IntegrityIssueRecord.resolved_at.is_(None)))}
    for filename, detail in found:
        if (filename, detail) not in reported:
            report_issue(db, KIND, detail, run_number=run_number, filename=filename)
    return len(found)


def run_data_summary(db: Database, ddm: DataManagement, config: Config, run_number: int
                     ) -> dict[str, object]:
    """What the DDM holds for a run (the demo prints it): files, verified archive copies,
    closed datasets, and the reconciliation's differences."""
    dataset = DID(naming.SCOPE, naming.run_dataset(run_number))
    view = ddm.dataset_view(dataset)
    tapes = [site.tape_rse for site in config.sites]
    datasets = [dataset] + [DID(naming.SCOPE, naming.site_dataset(run_number, s.name))
                            for s in config.sites]
    return {
        "ddm_files_in_run_dataset": len(view),
        "ddm_files_archived_on_all_tapes": sum(
            all(v.states.get(t) == "A" for t in tapes) for v in view.values()),
        "ddm_datasets_closed": not any(map(ddm.is_open, datasets)),
        "ddm_differences": reconcile_run(db, ddm, config, run_number),
    }
