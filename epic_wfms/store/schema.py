"""Bookkeeping tables (SQLAlchemy 2 ORM). Portable SQL only: SQLite now, PostgreSQL unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from epic_wfms.lifecycle.stf import ArchiveStatus, ProcessingStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on the way in and out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class RunRecord(Base):
    __tablename__ = "runs"
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    run_type: Mapped[str] = mapped_column(String(20))
    detector_config: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # lifecycle.run.RunStatus
    announced_at: Mapped[datetime] = mapped_column(default=utcnow)
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    target_stfs: Mapped[int | None]
    total_stfs: Mapped[int | None]  # as declared by the DAQ at end_run
    first_sequence: Mapped[int] = mapped_column(default=0)  # the testbed counts from 1
    merged_output: Mapped[str | None] = mapped_column(String(255))
    finished_at: Mapped[datetime | None]


class StateTransitionRecord(Base):
    """Append-only history of the detector/DAQ state machine (see database.py guard)."""

    __tablename__ = "state_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime]
    trigger: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str] = mapped_column(String(20))
    from_substate: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    to_substate: Mapped[str] = mapped_column(String(20))
    flavour: Mapped[str] = mapped_column(String(20))
    effect: Mapped[str] = mapped_column(String(80))
    run_number: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text)
    synchronised: Mapped[bool] = mapped_column(Boolean, default=False)  # followed a report


class StfRecord(Base):
    __tablename__ = "stfs"
    __table_args__ = (
        UniqueConstraint("run_number", "sequence", name="uq_stf_run_seq"),
        Index("ix_stf_run_processing", "run_number", "processing_status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    run_number: Mapped[int | None] = mapped_column(ForeignKey("runs.number"))
    sequence: Mapped[int]
    first_tf_time: Mapped[datetime]
    last_tf_time: Mapped[datetime]
    tf_count: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    adler32: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(20))
    substate: Mapped[str] = mapped_column(String(20))
    daq_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    available_at: Mapped[datetime]  # when the DAQ announced it
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    validation: Mapped[str] = mapped_column(String(20))  # lifecycle.stf.Validation
    registered_at: Mapped[datetime | None]
    archive_status: Mapped[str] = mapped_column(String(20), default=ArchiveStatus.PENDING)
    archived_at: Mapped[datetime | None]
    processing_status: Mapped[str] = mapped_column(String(20),
                                                   default=ProcessingStatus.WAITING)
    site: Mapped[str | None] = mapped_column(String(40))
    claimed_by: Mapped[str | None] = mapped_column(String(100))  # process agent of its claim
    dispatched_at: Mapped[datetime | None]  # first processing job started on a worker
    processed_at: Mapped[datetime | None]
    reco_output: Mapped[str | None] = mapped_column(String(255))
    merge_id: Mapped[int | None] = mapped_column(ForeignKey("merges.id"))


class TfSampleRecord(Base):
    __tablename__ = "tf_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    stf_filename: Mapped[str] = mapped_column(String(255), index=True)
    run_number: Mapped[int | None]
    sample_index: Mapped[int]
    first_tf: Mapped[int]
    tf_count: Mapped[int]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    adler32: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class RseRecord(Base):
    __tablename__ = "rses"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    rse_type: Mapped[str] = mapped_column(String(10))  # DISK, TAPE
    root: Mapped[str] = mapped_column(Text)


class DidRecord(Base):
    """Data identifiers as in Rucio: scope:name, FILE or DATASET."""

    __tablename__ = "dids"
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    did_type: Mapped[str] = mapped_column(String(10))  # FILE, DATASET
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class AttachmentRecord(Base):
    __tablename__ = "attachments"
    dataset_scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    attached_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReplicaRecord(Base):
    __tablename__ = "replicas"
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    rse: Mapped[str] = mapped_column(ForeignKey("rses.name"), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(1))  # A available, C copying, B bad (Rucio codes)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified_at: Mapped[datetime | None]


class RuleRecord(Base):
    __tablename__ = "rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(255), index=True)
    rse_expression: Mapped[str] = mapped_column(String(255))
    copies: Mapped[int]
    activity: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(12))  # REPLICATING, OK, STUCK
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobRecord(Base):
    """One job attempt, with PanDA's job states (lifecycle.job.JobStatus)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # lifecycle.job.JobKind
    site: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempt_nr: Mapped[int]
    max_attempts: Mapped[int]
    run_number: Mapped[int | None]
    stf_filename: Mapped[str | None] = mapped_column(String(255), index=True)
    output: Mapped[str | None] = mapped_column(String(255))
    agent: Mapped[str | None] = mapped_column(String(100))  # whose executor runs it
    command: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # PanDA's PandaID when the attempt is a PanDA job (wfms.backend: panda), else NULL
    panda_id: Mapped[int | None] = mapped_column(BigInteger, unique=True, index=True)


class ProvenanceRecord(Base):
    """input -> output edge produced by a job: the lineage of every derived file."""

    __tablename__ = "provenance"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    input_name: Mapped[str] = mapped_column(String(255), index=True)
    output_name: Mapped[str] = mapped_column(String(255), index=True)


class MergeRecord(Base):
    """A partial merge of one site's STFs, or the run's gather (kind gather, site NULL)."""

    __tablename__ = "merges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_number: Mapped[int] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(10))  # lifecycle.merge.MergeKind
    site: Mapped[str | None] = mapped_column(String(40))  # whose STFs; NULL for the gather
    merge_index: Mapped[int]
    output: Mapped[str] = mapped_column(String(255))
    n_inputs: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))  # lifecycle.merge.MergeStatus
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    agent: Mapped[str | None] = mapped_column(String(100))  # who started (or resubmitted) it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntegrityIssueRecord(Base):
    __tablename__ = "integrity_issues"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    run_number: Mapped[int | None]
    filename: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class GateEventRecord(Base):
    """Processing suspended/resumed, by state or by stream activity (R3.2)."""

    __tablename__ = "gate_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_number: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    backlog: Mapped[int] = mapped_column(default=0)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsumedMessageRecord(Base):
    __tablename__ = "consumed_messages"
    subscription: Mapped[str] = mapped_column(String(100), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    msg_type: Mapped[str] = mapped_column(String(40))
    handled_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetterRecord(Base):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription: Mapped[str] = mapped_column(String(100))
    destination: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    run_number: Mapped[int | None] = mapped_column(index=True)  # when the body names one
    msg_type: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)  # replayed, discarded: by whom, why


class AwaitedStfRecord(Base):
    """An STF announced without its file (the testbed's stf_gen): registered when the file
    appears in the DAQ buffer, reported missing after ``testbed.file_grace_s``."""

    __tablename__ = "awaited_stfs"
    filename: Mapped[str] = mapped_column(String(255), primary_key=True)
    run_number: Mapped[int] = mapped_column(index=True)
    sequence: Mapped[int]
    path: Mapped[str] = mapped_column(Text)
    announcement: Mapped[dict[str, Any]] = mapped_column(default=dict)  # as the testbed sent it
    announced_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), index=True)  # awaiting, arrived, missing
    resolved_at: Mapped[datetime | None]


class AgentRecord(Base):
    """Liveness of agents run as separate processes (like Harvester's and PanDA's heartbeats)."""

    __tablename__ = "agents"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))  # lifecycle.agent.AgentStatus
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


class BrokerageDecisionRecord(Base):
    """Where brokerage sent a job or STF and why (R10.3: "why did my job go there?")."""

    __tablename__ = "brokerage_decisions"
    __table_args__ = (Index("ix_decision_site_time", "site", "decided_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_ref: Mapped[str] = mapped_column(String(255), index=True)
    workflow: Mapped[str] = mapped_column(String(100), default="")
    user: Mapped[str] = mapped_column("username", String(100), default="")
    activity: Mapped[str] = mapped_column(String(40))  # workflow class
    lane: Mapped[str] = mapped_column(String(10))  # normal, express
    outcome: Mapped[str] = mapped_column(String(20))  # assigned, deferred, no_candidate
    site: Mapped[str | None] = mapped_column(String(40))
    queue: Mapped[str | None] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    reasons: Mapped[dict[str, Any]] = mapped_column(default=dict)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResourceUsageRecord(Base):
    """Resources one job used, for accounting by workflow, user, site and activity (R8.6)."""

    __tablename__ = "resource_usage"
    __table_args__ = (
        Index("ix_usage_site_activity", "site", "activity"),
        Index("ix_usage_workflow", "workflow"),
        Index("ix_usage_user", "username"),
        Index("ix_usage_ended", "ended_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_ref: Mapped[str] = mapped_column(String(255), index=True)
    workflow: Mapped[str] = mapped_column(String(100), default="")
    user: Mapped[str] = mapped_column("username", String(100), default="")
    site: Mapped[str] = mapped_column(String(40))
    queue: Mapped[str] = mapped_column(String(64))
    activity: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # finished, failed
    cores: Mapped[int]
    gpus: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    core_seconds: Mapped[float] = mapped_column(Float)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)


class ResourceUsageHourRecord(Base):
    """Resource usage summed per hour (of the jobs' ends) and group: what the monitor reads for
    a period, so that a month or a year of usage is a few thousand rows (R8.6, R10.9). Kept in
    the transaction that records the jobs' usage (``accounting.insert_usage``)."""

    __tablename__ = "resource_usage_hourly"
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    activity: Mapped[str] = mapped_column(String(40), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(100), primary_key=True)
    user: Mapped[str] = mapped_column("username", String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    core_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    jobs: Mapped[int] = mapped_column(default=0)


# -- fast processing path (epic_wfms/fastpath, docs/fastpath.md) -----------------------------
class TfSliceRecord(Base):
    """One TF slice, the fast path's work unit (lifecycle.fastpath.SliceStatus)."""

    __tablename__ = "tf_slices"
    __table_args__ = (Index("ix_tf_slices_run_status", "run_number", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    run_number: Mapped[int | None]
    stf_filename: Mapped[str] = mapped_column(String(255))
    sample_filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    first_tf: Mapped[int]
    tf_count: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))  # monitoring, detector_status
    express: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(100))
    available_at: Mapped[datetime]  # the TF sample was announced by the DAQ
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    processing_s: Mapped[float | None]
    n_events: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


class FastPathWorkerRecord(Base):
    """A standing fast-path worker: registered, exited (drained/retired) or dead (replaced)."""

    __tablename__ = "fastpath_workers"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_number: Mapped[int | None] = mapped_column(index=True)
    pid: Mapped[int | None]  # its payload process
    status: Mapped[str] = mapped_column(String(20))
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    slices_done: Mapped[int] = mapped_column(default=0)
    detail: Mapped[str | None] = mapped_column(Text)


class FastPathScalingRecord(Base):
    """One autoscaling decision with what it was based on."""

    __tablename__ = "fastpath_scaling"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_number: Mapped[int | None] = mapped_column(index=True)
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)
    from_size: Mapped[int]
    to_size: Mapped[int]
    backlog: Mapped[int]
    slice_s: Mapped[float | None]
    reason: Mapped[str] = mapped_column(Text)


class FastPathAlarmRecord(Base):
    """An alarm raised by a slice result (single-event anomaly or detector-status check)."""

    __tablename__ = "fastpath_alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_number: Mapped[int | None] = mapped_column(index=True)
    slice_name: Mapped[str] = mapped_column(String(255))
    stf_filename: Mapped[str] = mapped_column(String(255))
    event: Mapped[int | None]  # TF index in the STF; None for a whole-slice check
    kind: Mapped[str] = mapped_column(String(40))
    value: Mapped[float]
    threshold: Mapped[float]
    detail: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)


class FastPathHistogramRecord(Base):
    """A rolling per-run quality histogram, filled from slice results (fast monitoring)."""

    __tablename__ = "fastpath_histograms"
    run_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    low: Mapped[float]
    high: Mapped[float]
    counts: Mapped[list[int]] = mapped_column(JSON)
    underflow: Mapped[int] = mapped_column(default=0)
    overflow: Mapped[int] = mapped_column(default=0)
    entries: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
class TemplateSubmissionRecord(Base):
    """A rendered template handed to a target; the rendered workflow is kept (R1.12)."""

    __tablename__ = "template_submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    template: Mapped[str] = mapped_column(String(100), index=True)
    template_version: Mapped[str] = mapped_column(String(20))
    template_hash: Mapped[str] = mapped_column(String(64))
    rendered_hash: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(20))  # panda, idds, cwl, local
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    campaign: Mapped[str] = mapped_column(String(100), index=True)
    activity: Mapped[str] = mapped_column(String(20))  # production, analysis
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rendered: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20))  # lifecycle.template.SubmissionStatus
    runtime: Mapped[str | None] = mapped_column(Text)  # how payloads ran (container or host)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    username: Mapped[str] = mapped_column(String(100), default="")  # who submitted it
    priority: Mapped[int | None]  # the campaign's, or as an operator set it
    idds_request_id: Mapped[int | None]  # target idds: the request iDDS made of it


class TemplateStepRunRecord(Base):
    """One job of one step (and loop iteration) run by the local workflow runner."""

    __tablename__ = "template_step_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("template_submissions.id"), index=True)
    step: Mapped[str] = mapped_column(String(100))
    iteration: Mapped[int] = mapped_column(default=1)
    job_index: Mapped[int] = mapped_column(default=0)
    attempt: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(20))  # lifecycle.template.StepRunStatus
    command: Mapped[str] = mapped_column(Text)
    exit_code: Mapped[int | None]
    runtime: Mapped[str] = mapped_column(String(40))  # apptainer, docker, host
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class ProductionTagUsageRecord(Base):
    """First production use of a tag: its content hash, which may never change afterwards."""

    __tablename__ = "production_tag_usage"
    tag: Mapped[str] = mapped_column(String(20), primary_key=True)
    kind: Mapped[str] = mapped_column(String(1))
    content_hash: Mapped[str] = mapped_column(String(64))
    submission_id: Mapped[int] = mapped_column(ForeignKey("template_submissions.id"))
    first_used_at: Mapped[datetime] = mapped_column(default=utcnow)
class OperatorCommandRecord(Base):
    """Every write made through the monitor (suspend/resume, kill, retry, priority): who, what,
    when, with what result. The latest suspend/resume is the operator's processing hold."""

    __tablename__ = "operator_commands"
    __table_args__ = (Index("ix_opcmd_action_id", "action", "id"),
                      Index("ix_opcmd_target", "target_kind", "target_id"),
                      Index("ix_opcmd_user", "username"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(40))  # suspend, resume, kill, retry, priority
    target_kind: Mapped[str] = mapped_column(String(20))  # streaming, job, task
    target_id: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    username: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(40))
    result: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class RestUsageRecord(Base):
    """REST usage per user, endpoint and day (R10.8), counted by the monitor."""

    __tablename__ = "rest_usage"
    username: Mapped[str] = mapped_column(String(100), primary_key=True)
    method: Mapped[str] = mapped_column(String(8), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD (UTC)
    calls: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)


# indexes the monitor's current-state pages need with a year of history (migration 0005)
Index("ix_stf_processed_at", StfRecord.processed_at)
Index("ix_stf_processing_site", StfRecord.processing_status, StfRecord.site)
Index("ix_stf_received_at", StfRecord.received_at)
Index("ix_stf_run_archive", StfRecord.run_number, StfRecord.archive_status)
Index("ix_jobs_site_status", JobRecord.site, JobRecord.status)
Index("ix_jobs_run_kind", JobRecord.run_number, JobRecord.kind)
Index("ix_jobs_ended_at", JobRecord.ended_at)
Index("ix_issues_open", IntegrityIssueRecord.resolved_at, IntegrityIssueRecord.run_number)
Index("ix_transitions_run", StateTransitionRecord.run_number)
Index("ix_gate_events_run", GateEventRecord.run_number)
Index("ix_runs_status", RunRecord.status)
class PandaTaskRecord(Base):
    """A JEDI task as PanDA knows it; ``jedi_task_id`` is PanDA's own id (shown by PanDA)."""

    __tablename__ = "panda_tasks"
    jedi_task_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    server: Mapped[str] = mapped_column(String(255))  # PanDA server URL
    task_name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))  # prompt, merge, production, ...
    run_number: Mapped[int | None]
    site: Mapped[str | None] = mapped_column(String(40))
    input_dataset: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20))  # PanDA/JEDI task status
    priority: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)  # as submitted
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(String(100), default="")  # PanDA's userName
    campaign: Mapped[str] = mapped_column(String(100), default="")
    submission_id: Mapped[int | None]  # the template submission that made it, if any


class PandaJobRecord(Base):
    """A PanDA job of a task; ``stf_filename`` links it to the STF it read (by input LFN)."""

    __tablename__ = "panda_jobs"
    __table_args__ = (Index("ix_panda_jobs_task", "jedi_task_id"),)
    panda_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    jedi_task_id: Mapped[int] = mapped_column(ForeignKey("panda_tasks.jedi_task_id"))
    status: Mapped[str] = mapped_column(String(20))
    site: Mapped[str | None] = mapped_column(String(128))
    attempt_nr: Mapped[int] = mapped_column(default=0)
    input_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    stf_filename: Mapped[str | None] = mapped_column(String(255), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# indexes of the workload, fast path and brokerage pages (migration 0009)
Index("ix_submissions_user", TemplateSubmissionRecord.username)
Index("ix_submissions_created", TemplateSubmissionRecord.created_at)
Index("ix_step_runs_submission_step", TemplateStepRunRecord.submission_id,
      TemplateStepRunRecord.step)
Index("ix_panda_tasks_user", PandaTaskRecord.username)
Index("ix_panda_tasks_campaign", PandaTaskRecord.campaign)
Index("ix_panda_tasks_submission", PandaTaskRecord.submission_id)
Index("ix_panda_tasks_status", PandaTaskRecord.status)
Index("ix_panda_tasks_submitted", PandaTaskRecord.submitted_at)
Index("ix_panda_jobs_status", PandaJobRecord.status)
Index("ix_decisions_time", BrokerageDecisionRecord.decided_at)
Index("ix_usage_user_ended", ResourceUsageRecord.user, ResourceUsageRecord.ended_at)
Index("ix_tf_slices_run_completed", TfSliceRecord.run_number, TfSliceRecord.completed_at)
Index("ix_usage_hourly_user", ResourceUsageHourRecord.user, ResourceUsageHourRecord.hour)
