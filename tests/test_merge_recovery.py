"""Merge bookkeeping interrupted by an outage is recovered at the merge agent's next start
(issue 19): jobs left activated are failed, the merge is resubmitted as the attempt after
the last one any of its jobs made, under that attempt's own output name."""

from __future__ import annotations

from sqlalchemy import select

from epic_wfms.lifecycle.merge import MergeKind
from epic_wfms.model import naming
from epic_wfms.store.schema import JobRecord, MergeRecord


def test_a_merge_whose_job_stayed_activated_is_resubmitted_as_the_next_attempt(
        installation, monkeypatch):
    inst = installation
    merging = inst.orchestrator.merging
    base = naming.merge_filename(240, "E1_BNL", 0)
    with inst.db.session() as session:
        first = JobRecord(kind="merge", site="E1_BNL", status="failed", attempt_nr=1,
                          max_attempts=3, run_number=240, output=base, command="merge")
        # attempt 2 was submitted, but the merge never learnt its id (the update failed
        # during a database outage), and the job stayed activated
        second = JobRecord(kind="merge", site="E1_BNL", status="activated", attempt_nr=2,
                           max_attempts=3, run_number=240,
                           output=naming.attempt_filename(base, 2), command="merge")
        session.add_all([first, second])
        session.flush()
        merge = MergeRecord(run_number=240, kind=MergeKind.PARTIAL, site="E1_BNL",
                            merge_index=0, output=base, n_inputs=0, status="running",
                            job_id=first.id)
        session.add(merge)
        session.flush()
        merge_id, second_id = merge.id, second.id
    submitted = []
    monkeypatch.setattr(merging, "_submit", lambda *args: submitted.append(args))

    merging.recover()

    with inst.db.session() as session:
        orphan = session.get(JobRecord, second_id)
        assert orphan.status == "failed" and orphan.error.startswith("lost:")
        assert session.scalars(select(JobRecord).where(
            JobRecord.status.in_(["activated", "running"]))).all() == []
    (args,) = submitted
    merge_id_, site, _inputs, output, kind, attempt = args
    assert (merge_id_, site, output, kind, attempt) == (merge_id, "E1_BNL", base,
                                                        MergeKind.PARTIAL, 3)
    assert naming.attempt_filename(output, attempt) == "swf.000240.E1_BNL.merge_0000.a3.json"
