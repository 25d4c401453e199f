"""Exports: Prometheus metrics (``/metrics``) and OpenSearch bulk NDJSON (R11.6).

Metrics are computed from the store at scrape time (a custom collector), so any number of
monitor replicas report the same figures. The bulk export pages by primary key (keyset), so
a year of history streams in constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.monitor import queries as q
from epic_wfms.monitor.api.errors import ERROR_RESPONSES
from epic_wfms.monitor.api.params import INT32
from epic_wfms.monitor.auth import Principal
from epic_wfms.monitor.readstore import ReadStore
from epic_wfms.monitor.state import MonitorState, monitor_state, sensitive_reader
from epic_wfms.store.schema import (
    IntegrityIssueRecord,
    JobRecord,
    RunRecord,
    StateTransitionRecord,
    StfRecord,
)

router = APIRouter(responses=ERROR_RESPONSES)


class StoreCollector:
    """Gauges read from the store at each scrape."""

    def __init__(self, reads: ReadStore, sites: list[str]) -> None:
        self.reads, self.sites = reads, sites

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.reads.session() as session:
            yield from self._collect(session)

    def _collect(self, session: Session) -> Iterator[GaugeMetricFamily]:
        det = q.detector_state(session)
        state = GaugeMetricFamily("epic_wfms_detector_state", "1 for the current detector "
                                  "state/substate", labels=["state", "substate"])
        state.add_metric([det["state"], det["substate"]], 1)
        yield state
        run = q.current_run(session)
        stages = GaugeMetricFamily("epic_wfms_run_stfs", "STFs of the current run per stage",
                                   labels=["run", "stage"])
        latency = GaugeMetricFamily("epic_wfms_stage_latency_seconds",
                                    "stage latency of the current run's newest STFs",
                                    labels=["stage", "quantile"])
        if run:
            for stage, n in run["counts"].items():
                stages.add_metric([str(run["number"]), stage], n)
            for stage, values in run["latency"].items():
                for quantile, key in (("0.5", "p50_s"), ("0.95", "p95_s")):
                    if values[key] is not None:
                        latency.add_metric([stage, quantile], values[key])
        yield stages
        yield latency
        backlog = GaugeMetricFamily("epic_wfms_backlog_stfs", "STFs waiting or in flight",
                                    labels=["site", "status"])
        for site, by_status in q.backlog(session).items():
            for status, n in by_status.items():
                backlog.add_metric([site, status], n)
        yield backlog
        jobs = GaugeMetricFamily("epic_wfms_jobs_ended_24h", "jobs ended in the last 24 h",
                                 labels=["site", "status"])
        active = GaugeMetricFamily("epic_wfms_jobs_active", "jobs defined/activated/running",
                                   labels=["site", "status"])
        for site in q.sites(session, [{"name": s} for s in self.sites]):
            for status, n in site["jobs_recent"].items():
                jobs.add_metric([site["name"], status], n)
            for status, n in site["jobs_active"].items():
                active.add_metric([site["name"], status], n)
        yield jobs
        yield active
        issues = GaugeMetricFamily("epic_wfms_open_issues", "open integrity issues",
                                   labels=["kind"])
        for kind, n in q.summary(session, 1)["open_issues"].items():
            issues.add_metric([kind], n)
        yield issues
        held = GaugeMetricFamily("epic_wfms_processing_suspended",
                                 "1 while an operator holds processing")
        held.add_metric([], 1 if q.processing_hold(session) else 0)
        yield held
        age = GaugeMetricFamily("epic_wfms_agent_heartbeat_age_seconds",
                                "seconds since an agent's last heartbeat", labels=["agent", "role"])
        for agent in q.agents(session):
            age.add_metric([agent["name"], agent["role"]], agent["heartbeat_age_s"])
        yield age


def metrics_registry(state: MonitorState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(state.reads, [s.name for s in state.config.sites]))
    return registry


@router.get("/metrics", tags=["exports"], summary="Prometheus metrics",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(_: Principal = Depends(sensitive_reader),
            state: MonitorState = Depends(monitor_state)) -> Response:
    registry = getattr(state, "_metrics", None) or metrics_registry(state)
    state._metrics = registry  # type: ignore[attr-defined]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


EXPORTABLE: dict[str, tuple[Any, Any]] = {  # kind -> (record, keyset column)
    "runs": (RunRecord, RunRecord.number),
    "stfs": (StfRecord, StfRecord.id),
    "jobs": (JobRecord, JobRecord.id),
    "transitions": (StateTransitionRecord, StateTransitionRecord.id),
    "issues": (IntegrityIssueRecord, IntegrityIssueRecord.id),
}
ExportKind = Literal["runs", "stfs", "jobs", "transitions", "issues"]


def bulk_ndjson(reads: ReadStore, kind: str, run_number: int | None = None, after: int = 0,
                limit: int | None = None, index_prefix: str = "epic-wfms",
                chunk: int = 2000) -> Iterator[str]:
    """OpenSearch ``_bulk`` body: an ``index`` action line then the document, per record."""
    record, key = EXPORTABLE[kind]
    index = f"{index_prefix}-{kind}"
    sent = 0
    while limit is None or sent < limit:
        size = chunk if limit is None else min(chunk, limit - sent)
        query = select(record).where(key > after).order_by(key).limit(size)
        if run_number is not None and hasattr(record, "run_number"):
            query = query.where(record.run_number == run_number)
        with reads.session() as session:
            rows = [q.as_dict(r) for r in session.scalars(query)]
        if not rows:
            return
        for row in rows:
            doc_id = row[key.key]
            yield json.dumps({"index": {"_index": index, "_id": str(doc_id)}}) + "\n"
            yield json.dumps(row, default=str) + "\n"
        sent += len(rows)
        after = rows[-1][key.key]


@router.get("/api/v1/export/opensearch", tags=["exports"],
            summary="Records as OpenSearch bulk NDJSON",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def opensearch(kind: ExportKind = "stfs",
               run: Annotated[int | None, Query(ge=0, le=INT32)] = None,
               after: Annotated[int, Query(ge=0, le=INT32)] = 0,
               limit: Annotated[int | None, Query(ge=1, le=10_000_000)] = None,
               _: Principal = Depends(sensitive_reader),
               state: MonitorState = Depends(monitor_state)) -> StreamingResponse:
    return StreamingResponse(bulk_ndjson(state.reads, kind, run, after, limit),
                             media_type="application/x-ndjson")
