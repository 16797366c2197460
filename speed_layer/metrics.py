"""Prometheus metrics of one speed-layer process, in a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class SpeedMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("speed_records_consumed", "Records read from Kafka", registry=r)
        self.events = Counter("speed_events", "Valid events counted in the aggregates", registry=r)
        self.duplicates = Counter("speed_duplicates", "Duplicate events (not summed)", registry=r)
        self.rejected = Counter("speed_dlq_records", "Invalid records sent to the DLQ", registry=r)
        self.dlq_sent = Counter(
            "speed_dlq_sent",
            "Records sent to the DLQ topic, by the field their rejection names (value: the "
            "record as a whole); a replay after a crash may send one again",
            ["reason"],
            registry=r,
        )
        self.late = Counter(
            "speed_late_records",
            "Records stamped in an already sealed ingest bucket, counted in the first open one",
            registry=r,
        )
        self.fenced = Counter("speed_fenced_commits", "Commits refused by fencing", registry=r)
        self.events_per_s = Gauge("speed_events_per_second", "Recent event rate", registry=r)
        self.lag = Gauge(
            "speed_consumer_lag", "End offset minus stored offset", ["partition"], registry=r
        )
        self.watermark = Gauge(
            "speed_landing_watermark_ms", "End of the newest sealed ingest bucket", registry=r
        )
        self.stalled_seconds = Gauge(
            "speed_stalled_seconds",
            "Seconds without progress while records are waiting (0 when healthy)",
            registry=r,
        )
        self.healthy = Gauge(
            "speed_healthy", "1 unless stalled past the unhealthy bound", registry=r
        )
        self.healthy.set(1)
        self.halted = Gauge(
            "speed_partition_halted",
            "1 while a partition is halted: its log and the stored offsets disagree",
            ["partition"],
            registry=r,
        )
        self.landing_errors = Counter(
            "speed_landing_write_errors",
            "Landing zone writes that failed (disk full, I/O error) and were retried",
            registry=r,
        )
        self.kafka_errors = Counter(
            "speed_kafka_errors",
            "Transient Kafka errors retried with backoff",
            ["operation"],
            registry=r,
        )
        self.under_replicated = Gauge(
            "speed_kafka_under_replicated_partitions",
            "Partitions of the topic with fewer in-sync replicas than replicas, from the "
            "brokers' metadata (speed_layer.replication, every 30 s)",
            ["topic"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "speed_batch_commit_seconds",
            "Time to commit one poll batch to the store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
