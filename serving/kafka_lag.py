"""End offsets of the transactions topic: the speed lag and the speed watermark.

One lazily created consumer (no group) behind a lock; if Kafka cannot be reached the offsets
are unknown rather than failing the request. Every ``/v1`` answer's meta needs them, so a
reading (or a failure to get one) is reused for ``CACHE_S``: requests neither queue on the
broker nor each wait out a connection time-out while it is down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PartitionProgress:
    partition: int
    stored_offset: int  # the next offset the speed store will count
    end_offset: int | None  # None: the broker did not answer
    lag: int | None


def partition_progress(
    partitions: int, stored: dict[int, int], reading: EndOffsetsReading | None
) -> list[PartitionProgress]:
    """Each partition's stored offset against its end offset (a partition the store has not
    counted on yet is at 0)."""
    out = []
    for partition in range(partitions):
        offset = stored.get(partition, 0)
        end = reading.offsets.get(partition) if reading else None
        out.append(
            PartitionProgress(partition, offset, end, None if end is None else max(end - offset, 0))
        )
    return out
