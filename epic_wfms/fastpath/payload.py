"""The TF-slice payload: per-event quantities and detector-status checks from TF-sample bytes.

Runs as a standing process (``--serve``: calibrate once, then one JSON request per line on
stdin, one JSON reply per line on stdout) or once per slice (``--once``: the per-slice
start-up the standing pool avoids; the benchmark compares both). Start-up is the expensive
part, as for ePIC reconstruction: the calibration table (pedestal and gain of every channel)
is built before the first slice. Only the standard library and ``model.stf_file`` are
imported so that a fresh process starts as fast as Python allows.

An *event* is one TF here (the simulated data have no finer structure). Request:
``{"slice": {name, path, first_tf, tf_count, kind}, "params": {...}}``; reply:
``{"ok": true, "events": [...], "summary": {...}, "anomalies": [...], "processing_s": s}``
or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from epic_wfms.model.stf_file import (
    DETECTOR_CHANNELS,
    SAMPLE_MAGIC,
    SATURATED_ADC,
    iter_timeframes,
    read_header,
)

CALO = range(16384, 49152)  # ECAL and HCAL channels: the calorimeter energy
ENERGY_SCALE = 1e-3  # calibrated ADC counts -> GeV-like units for the monitor


class Calibration:
    """Pedestal and gain per channel, derived deterministically (a conditions-DB stand-in)."""

    def __init__(self, channels: int) -> None:
        self.pedestal: list[int] = []
        self.gain: list[float] = []
        for channel in range(channels):
            h = (channel * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
            self.pedestal.append(40 + h % 32)
            self.gain.append(0.8 + ((h >> 8) % 400) / 1000)
        self.channels = channels

    def energy(self, channel: int, adc: int) -> float:
        if channel >= self.channels:
            return 0.0
        return max(adc - self.pedestal[channel], 0) * self.gain[channel] * ENERGY_SCALE


def _detector(channel: int) -> str:
    for name, channels in DETECTOR_CHANNELS.items():
        if channel in channels:
            return name
    return "unknown"


def _timeframes(path: Path, first: int, count: int) -> list[tuple[int, list]]:
    with path.open("rb") as handle:
        read_header(handle, SAMPLE_MAGIC)
        return [(tf.index, tf.hits) for tf in iter_timeframes(handle)
                if first <= tf.index < first + count]


def event_quantities(index: int, hits: list, calib: Calibration, params: dict) -> tuple[dict,
                                                                                     list]:
    """One event's quantities and its anomalies (saturation: a single-event alarm)."""
    n = len(hits)
    adc_sum = sum(adc for _c, adc, _t in hits)
    saturated = sum(1 for _c, adc, _t in hits if adc == SATURATED_ADC)
    energy = sum(calib.energy(c, adc) for c, adc, _t in hits if c in CALO)
    event = {
        "tf": index, "n_hits": n, "adc_mean": adc_sum / n if n else 0.0,
        "calo_energy": round(energy, 3), "saturated_fraction": saturated / n if n else 0.0,
    }
    anomalies = []
    if n and event["saturated_fraction"] >= params["saturation_fraction"]:
        anomalies.append({
            "event": index, "kind": "saturated_event", "value": event["saturated_fraction"],
            "threshold": params["saturation_fraction"],
            "detail": f"{saturated} of {n} hits at the ADC ceiling in TF {index}",
        })
    return event, anomalies


def detector_status(frames: list[tuple[int, list]], params: dict) -> tuple[dict, list]:
    """Occupancy per subsystem and the hottest channel over the slice (express check)."""
    occupancy = dict.fromkeys(DETECTOR_CHANNELS, 0)
    per_channel: dict[int, int] = {}
    for _index, hits in frames:
        for channel, _adc, _t in hits:
            occupancy[_detector(channel)] = occupancy.get(_detector(channel), 0) + 1
            per_channel[channel] = per_channel.get(channel, 0) + 1
    anomalies = []
    total = sum(occupancy.values())
    for name, count in occupancy.items():
        if total and count == 0:
            anomalies.append({"event": None, "kind": "dead_detector", "value": 0.0,
                              "threshold": 1.0, "detail": f"no {name} hits in {total} hits"})
    hottest, hits = max(per_channel.items(), key=lambda kv: kv[1], default=(None, 0))
    if hits >= params["hot_channel_hits"]:
        anomalies.append({"event": None, "kind": "hot_channel", "value": float(hits),
                          "threshold": float(params["hot_channel_hits"]),
                          "detail": f"channel {hottest} ({_detector(hottest)}) fired {hits} times"})
    return {"occupancy": occupancy, "hottest_channel": hottest, "hottest_hits": hits}, anomalies


def process(request: dict[str, Any], calib: Calibration) -> dict[str, Any]:
    started = time.perf_counter()
    work, params = request["slice"], request.get("params", {})
    params = {"saturation_fraction": 0.5, "hot_channel_hits": 8, "extra_cost_s": 0.0, **params}
    try:
        frames = _timeframes(Path(work["path"]), work["first_tf"], work["tf_count"])
    except (OSError, ValueError) as error:
        return {"ok": False, "error": f"cannot read {work['path']}: {error}"}
    if not frames:
        return {"ok": False, "error": f"no TFs {work['first_tf']}..+{work['tf_count']} in "
                                      f"{work['path']}"}
    events: list[dict] = []
    anomalies: list[dict] = []
    if work.get("kind") == "detector_status":
        summary, anomalies = detector_status(frames, params)
    else:
        for index, hits in frames:
            event, found = event_quantities(index, hits, calib, params)
            events.append(event)
            anomalies += found
        summary = {"n_hits": sum(e["n_hits"] for e in events),
                   "calo_energy": round(sum(e["calo_energy"] for e in events), 3)}
    if params["extra_cost_s"]:
        time.sleep(params["extra_cost_s"])  # simulated heavier reconstruction (tests, demos)
    return {"ok": True, "n_events": len(frames), "events": events, "summary": summary,
            "anomalies": anomalies, "processing_s": round(time.perf_counter() - started, 6)}


def serve(calib: Calibration, once: bool) -> int:
    out = sys.stdout
    for line in sys.stdin:
        try:
            reply = process(json.loads(line), calib)
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            reply = {"ok": False, "error": f"bad request: {type(error).__name__}: {error}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if once:
            break
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true", help="standing: many slices")
    mode.add_argument("--once", action="store_true", help="one slice, then exit")
    parser.add_argument("--channels", type=int, default=65536)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    calib = Calibration(args.channels)
    if args.serve:
        sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(),
                                     "init_s": round(time.perf_counter() - started, 4)}) + "\n")
        sys.stdout.flush()
    return serve(calib, once=args.once)


if __name__ == "__main__":
    sys.exit(main())
