"""End offsets of the transactions topic: the speed lag and the speed watermark.

One lazily created consumer (no group) behind a lock; if Kafka cannot be reached the offsets
are unknown rather than failing the request. Every ``/v1`` answer's meta needs them, so a
reading (or a failure to get one) is reused for ``CACHE_S``: requests neither queue on the
broker nor each wait out a connection time-out while it is down.
"""

from __future__ import annotations

import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lambda_contracts.settings import Settings
from serving.watermark import EndOffsetsReading

CACHE_S = 1.0


class EndOffsets:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._cached: EndOffsetsReading | None = None
        self._cached_at = float("-inf")

    def get(self) -> EndOffsetsReading | None:
        """The end offsets, read at most ``CACHE_S`` ago (None if Kafka did not answer)."""
        with self._lock:
            if time.monotonic() - self._cached_at >= CACHE_S:
                self._cached = self._read()
                self._cached_at = time.monotonic()
            return self._cached

    def _read(self) -> EndOffsetsReading | None:
        read_at_ms = int(time.time() * 1000)  # before the request: all counted by then
        try:
            if self._consumer is None:
                self._consumer = KafkaConsumer(
                    **self.settings.kafka_client_config,
                    client_id="lambda-serving",
                    request_timeout_ms=3000,
                )
            tps = [TopicPartition(self.settings.topic, p) for p in range(self.settings.partitions)]
            ends = self._consumer.end_offsets(tps)
            return EndOffsetsReading({tp.partition: o for tp, o in ends.items()}, read_at_ms)
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
