"""Rolling per-run quality histograms filled from slice results (the fast monitoring stream).

Filled in the same transaction that completes a slice, so each slice's events are counted
exactly once. ``read_histograms`` is what the monitor pages and the API read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epic_wfms.store.database import Database
from epic_wfms.store.fastpath import histogram_rows
from epic_wfms.store.schema import FastPathHistogramRecord, utcnow


@dataclass(frozen=True)
class HistogramSpec:
    name: str
    quantity: str  # key of a payload event
    low: float
    high: float
    bins: int
    title: str

    def bin_of(self, value: float) -> int | None:
        """Bin index, -1 underflow, ``bins`` overflow."""
        if value < self.low:
            return -1
        if value >= self.high:
            return self.bins
        return int((value - self.low) / (self.high - self.low) * self.bins)


HISTOGRAMS = (
    HistogramSpec("event_hits", "n_hits", 0, 200, 40, "hits per event"),
    HistogramSpec("event_calo_energy", "calo_energy", 0, 6000, 60,
                  "calorimeter energy per event (calibrated)"),
    HistogramSpec("event_adc_mean", "adc_mean", 0, 65536, 64, "mean ADC per event"),
    HistogramSpec("event_saturated_fraction", "saturated_fraction", 0, 1.0001, 20,
                  "fraction of saturated hits per event"),
)


def fill(session: Session, run_number: int, events: list[dict[str, Any]]) -> None:
    """Add ``events`` to the run's histograms (rows locked on PostgreSQL while updated)."""
    if not events:
        return
    rows = {row.name: row for row in session.scalars(
        select(FastPathHistogramRecord).where(FastPathHistogramRecord.run_number == run_number)
        .with_for_update())}
    for spec in HISTOGRAMS:
        row = rows.get(spec.name)
        if row is None:
            row = FastPathHistogramRecord(
                run_number=run_number, name=spec.name, low=spec.low, high=spec.high,
                counts=[0] * spec.bins, underflow=0, overflow=0, entries=0)
            session.add(row)
        counts = list(row.counts)
        for event in events:
            index = spec.bin_of(float(event[spec.quantity]))
            if index == -1:
                row.underflow += 1
            elif index == spec.bins:
                row.overflow += 1
            else:
                counts[index] += 1
        row.counts = counts  # a new list: the JSON column sees the change
        row.entries += len(events)
        row.updated_at = utcnow()


def read_histograms(db: Database, run_number: int) -> dict[str, dict[str, Any]]:
    """The run's histograms: ``{name: {title, low, high, counts, underflow, overflow,
    entries, updated_at}}`` (empty before the first slice result)."""
    titles = {spec.name: spec.title for spec in HISTOGRAMS}
    return {row.name: {
        "title": titles.get(row.name, row.name), "low": row.low, "high": row.high,
        "counts": list(row.counts), "underflow": row.underflow, "overflow": row.overflow,
        "entries": row.entries, "updated_at": row.updated_at.isoformat(),
    } for row in histogram_rows(db, run_number)}
