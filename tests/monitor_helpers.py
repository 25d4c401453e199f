"""Shared pieces of the monitor tests: an installation that has run, an app on it, tokens."""

from __future__ import annotations

from pathlib import Path

from epic_wfms.config import Config, load_config
from epic_wfms.daq import DaqSettings
from epic_wfms.monitor.auth import issue_token
from tests.conftest import StreamingRig

FAILING_SEQ = 5  # fails every attempt in run 301: the retry write path has work


def monitor_config(data_dir: Path, database_url: str | None = None, **monitor: object) -> Config:
    return load_config(
        data_dir=data_dir, database_url=database_url,
        processing={"merge_every": 4, "idle_suspend_s": 60.0, "missing_grace_s": 0.5,
                    "retry": {"max_attempts": 2, "backoff_s": 0.05}},
        fault_injection={"reco_failures": {FAILING_SEQ: 2}},
        monitor={"port": 0, "live_poll_s": 0.2, **monitor},
    )


def installation(config: Config) -> StreamingRig:
    return StreamingRig(config, DaqSettings(stf_size_bytes=4 * 1024, tfs_per_stf=10, rate_hz=0,
                                            tf_sample_size=2))


def bearer(config: Config, user: str, *roles: str, **kw: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(config, user, list(roles), **kw)}"}
