"""What the fast path needs of a standing worker pool, whoever provides the workers.

The embedded provider (``worker_pool.FastPathPool``) runs each worker as a consumer in this
process with its own payload process. A pool provisioned through iDDS's prompt service and
Harvester (workers as pilot jobs taking TF slices over the broker) implements the same
contract. ``fastpath.pool.provider`` chooses; ``installation.py`` builds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from epic_wfms.streaming.context import StreamingContext


class SlicePool(Protocol):
    def subscribe(self) -> None:
        """Follow run control: provision at ``run_imminent``, drain after ``end_run``."""
        ...

    def provision(self, run_number: int) -> None:
        """The run's target number of workers (idempotent for a redelivered request)."""
        ...

    def end_of_run(self, run_number: int) -> None:
        """The run ended: drain once its slices are done."""
        ...

    def activity(self, run_number: int | None = None) -> None:
        """Slices were queued: the pool is not idle (delays the drain)."""
        ...

    @property
    def size(self) -> int:
        """Workers alive and taking slices now."""
        ...

    def wait_ready(self, timeout: float) -> bool:
        """True once the run's target size of workers registered."""
        ...

    def wait_drained(self, timeout: float) -> bool:
        """True once every worker exited after the run's slices were done."""
        ...

    def stop(self) -> None:
        """Stop the pool's duties and its workers (process end)."""
        ...


def build_pool(ctx: StreamingContext) -> SlicePool:
    """The configured provider's pool (``fastpath.pool.provider``)."""
    if ctx.config.fastpath.pool.provider == "idds":
        from epic_wfms.fastpath.idds_pool import IddsSlicePool

        return IddsSlicePool(ctx)
    from epic_wfms.fastpath.worker_pool import FastPathPool

    return FastPathPool(ctx)
