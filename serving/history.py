"""The last hour of the platform's clocks, for the dashboard's time panel.

Every ``sample_s`` a task samples the speed watermark, the landing watermark, the published
batch horizon and each partition's lag, into a ring that holds one hour: a bounded size,
whatever runs. The sample is taken in a worker thread (it reads the speed store, the landing
zone's progress records and the broker's end offsets), so requests never wait for it. Each
serving worker keeps its own ring; the publishes drawn over it come from the speed store's
record of batch runs, not from the ring.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
import structlog

from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from serving.kafka_lag import partition_progress
from serving.queries import QueryService

HOUR_S = 3600

log = structlog.get_logger()


@dataclass(frozen=True)
class Sample:
    at_ms: int
    speed_watermark_ms: int | None
    landing_watermark_ms: int | None
    batch_horizon_ms: int | None
    lag: dict[int, int | None]  # partition -> records not yet counted (None: no broker)


class History:
    def __init__(self, take: Callable[[], Sample], sample_s: float) -> None:
        self.take = take
        self.sample_s = sample_s
        kept = max(1, int(HOUR_S / sample_s)) if sample_s else 1
        self.samples: deque[Sample] = deque(maxlen=kept)

    def recent(self, since_ms: int) -> list[Sample]:
        return [s for s in list(self.samples) if s.at_ms >= since_ms]

    async def run(self) -> None:
        """Sample until cancelled (the app's shutdown); a failed sample is logged and skipped."""
        while True:
            started = time.monotonic()
            try:
                self.samples.append(await anyio.to_thread.run_sync(self.take))
            except Exception as exc:  # a store or broker hiccup: the next sample tries again
                log.warning("history sample failed", error=repr(exc))
            await asyncio.sleep(max(0.0, self.sample_s - (time.monotonic() - started)))


def take_sample(settings: Settings, queries: QueryService, layout: Layout) -> Sample:
    """The clocks now: what /v1/freshness reports, without a request."""
    at_ms = int(time.time() * 1000)
    reading = queries.end_offsets()
    stored = {p["kafka_partition"]: p["next_offset"] for p in queries.speed.partitions()}
    pointer = queries.switch.current.read()
    landing = layout.landing_watermark(settings.partitions, settings.bucket_ms)
    return Sample(
        at_ms,
        queries.speed_watermark_ms(reading),
        landing or None,
        pointer.horizon_ms if pointer else None,
        {p.partition: p.lag for p in partition_progress(settings.partitions, stored, reading)},
    )
