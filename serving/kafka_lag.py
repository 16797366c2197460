"""End offsets of the transactions topic, for the speed layer's lag in /v1/freshness.

One lazily created consumer (no group) behind a lock; if Kafka cannot be reached the lag is
reported as unknown rather than failing the request.
"""

from __future__ import annotations

import threading

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lambda_contracts.settings import Settings


class EndOffsets:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()

    def get(self) -> dict[int, int] | None:
        with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = KafkaConsumer(
                        bootstrap_servers=self.settings.bootstrap_servers,
                        client_id="lambda-serving",
                        request_timeout_ms=3000,
                    )
                tps = [
                    TopicPartition(self.settings.topic, p) for p in range(self.settings.partitions)
                ]
                ends = self._consumer.end_offsets(tps)
                return {tp.partition: offset for tp, offset in ends.items()}
            except (KafkaError, AssertionError, OSError):
                self.close_unlocked()
                return None

    def close_unlocked(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()
