"""Under-replicated partitions of the platform's topics, from the brokers' metadata.

Kafka exports ``UnderReplicatedPartitions`` over JMX only, which neither the local broker nor
the official image serves to Prometheus. Each speed process asks the brokers for the topics'
metadata every ``INTERVAL_S`` (one small request, in a thread of its own, never on the poll
loop) and exports ``speed_kafka_under_replicated_partitions{topic}``: the partitions whose
in-sync replicas are fewer than their replicas. Every process exports the same numbers; the
alert takes the maximum. No answer leaves the last value and counts a Kafka error.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from lambda_contracts.settings import Settings
from speed_layer.metrics import SpeedMetrics

log = structlog.get_logger("speed_layer")

INTERVAL_S = 30.0


def under_replicated(topics: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """{topic: partitions with fewer in-sync replicas than replicas}, from the ``topics``
    of a metadata response (topics that came back with an error are left out)."""
    counts = {}
    for topic in topics:
        if topic.get("error_code", 0):
            continue
        partitions = topic.get("partitions", [])
        counts[topic["topic"]] = sum(1 for p in partitions if len(p["isr"]) < len(p["replicas"]))
    return counts


class ReplicationWatch(threading.Thread):
    """Exports the under-replicated partition counts every ``interval_s`` until ``stop``."""

    def __init__(
        self,
        settings: Settings,
        metrics: SpeedMetrics,
        stop: threading.Event,
        instance: int,
        interval_s: float = INTERVAL_S,
        admin: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(name="speed-replication", daemon=True)
        self.topics = [settings.topic, settings.dlq_topic]
        self.metrics = metrics
        self.stop = stop
        self.interval_s = interval_s
        self._make_admin = admin or (
            lambda: KafkaAdminClient(
                **settings.kafka_admin_config,
                client_id=f"speed-layer-{instance}-replication",
                request_timeout_ms=10_000,
            )
        )
        self._admin: Any = None

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.check()
        self._close()

    def check(self) -> None:
        """One metadata request; the gauges set from its answer."""
        try:
            if self._admin is None:
                self._admin = self._make_admin()
            topics = self._admin.describe_topics(self.topics)
        except (KafkaError, OSError, AssertionError) as exc:
            self.metrics.kafka_errors.labels("describe_topics").inc()
            log.warning("topic metadata unavailable", error=repr(exc))
            self._close()
            return
        for topic, count in under_replicated(topics).items():
            self.metrics.under_replicated.labels(topic).set(count)

    def _close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):  # a broken client must not end the thread
                self._admin.close()
            self._admin = None
