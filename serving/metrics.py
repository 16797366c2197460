"""Prometheus metrics of the serving process (a registry per app, no global state).

With several uvicorn workers, ``lambda-serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (the
client's multiprocess mode) before the workers start: each worker writes its values there and
``/metrics``, whichever worker answers it, reports the sum over all of them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class ServingMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram(
            "serving_request_seconds",
            "Request latency",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5),
            registry=r,
        )
        self.events = Counter(
            "serving_merged_events",
            "Events in answers, by the side they came from",
            ["side"],
            registry=r,
        )
        self.switch = Histogram(
            "serving_version_switch_seconds",
            "From a worker seeing a new CURRENT to answering from it: the version's load and "
            "the warming of its cache, both off the request path",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.warmed = Counter(
            "serving_warmed_parts",
            "Batch parts computed on a new version before it answered",
            registry=r,
        )
        self.staleness = Gauge(
            "serving_staleness_seconds",
            "Age of what each side has counted completely (speed: its watermark over all "
            "partitions; batch: its horizon)",
            ["side"],
            registry=r,
            multiprocess_mode="mostrecent",
        )

    def observe_switch(self, seconds: float, warmed: int) -> None:
        self.switch.observe(seconds)
        self.warmed.inc(warmed)

    def exposition(self) -> bytes:
        """The text format of this worker's metrics, or of every worker's (multiprocess)."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def refresh_staleness(self, queries) -> None:  # type: ignore[no-untyped-def]
        now = time.time()
        speed = queries.speed_watermark_ms()
        if speed:
            self.staleness.labels("speed").set(now - speed / 1000)
        pointer = queries.batch.layout.read_current()
        if pointer:
            self.staleness.labels("batch").set(now - pointer.horizon_ms / 1000)
