"""Dead-letter queue: invalid records go to ``transactions.dlq`` with why and where from.

Runs for every record that fails validation. The value and key are kept byte for byte; headers
carry ``reason`` and the original ``topic``/``partition``/``offset``/``timestamp``. ``flush`` is
called before the store commits the batch's offsets, so a rejected record is never lost (after a
crash it may be sent twice; consumers of the DLQ can dedup by the origin headers).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

# A rejected record may be as large as the broker allows; with the DLQ headers it could exceed
# the producer's request size and never be sent. Longer values are cut, and say so.
MAX_VALUE_BYTES = 900_000


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._futures: list[Any] = []

    def send(
        self,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        origin: tuple[str, int, int, int],
    ) -> None:
        topic, partition, offset, timestamp = origin
        headers = [
            ("reason", reason.encode("utf-8")),
            ("origin.topic", topic.encode()),
            ("origin.partition", str(partition).encode()),
            ("origin.offset", str(offset).encode()),
            ("origin.timestamp", str(timestamp).encode()),
        ]
        if value is not None and len(value) > MAX_VALUE_BYTES:
            headers.append(("value.truncated_from", str(len(value)).encode()))
            value = value[:MAX_VALUE_BYTES]
        self._futures.append(self.producer.send(self.topic, key=key, value=value, headers=headers))

    def forget_pending(self) -> None:
        """Drop unacknowledged sends after a failed flush: the rewound batch sends them again
        (the DLQ may then hold a record twice; its origin headers identify it)."""
        self._futures = []

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every sent record is acknowledged; raise if one was not."""
        if not self._futures:
            return
        self.producer.flush(timeout=timeout_s)
        futures, self._futures = self._futures, []
        for future in futures:
            future.get(timeout=timeout_s)
