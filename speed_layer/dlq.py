"""Dead-letter queue: invalid records go to ``transactions.dlq`` with why and where from.

Runs for every record that fails validation. The value and key are kept byte for byte (the head
of each, with its size and digest, where the record is too large to copy); headers carry
``reason`` and the original ``topic``/``partition``/``offset``/``timestamp``. ``flush`` is called
before the store commits the batch's offsets, so a rejected record is never lost (after a crash
it may be sent twice; consumers of the DLQ can dedup by the origin headers).
"""

from __future__ import annotations

import hashlib
from typing import Any

from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError
from prometheus_client import Counter

from lambda_contracts.rejects import ORIGIN_HEADERS, REASON_HEADER, reason_label

# A rejected record may be as large as the broker allows (a compressed batch can hold a key or
# value far larger than an uncompressed request may carry): with the DLQ headers it could exceed
# the producer's request size and never be sent, wedging its partition. Where the original does
# not fit, the dead letter keeps the head of its key and value, their sizes and SHA-256 digests.
MAX_RECORD_BYTES = 900_000
MAX_KEY_BYTES = 4096  # the head of an oversized key that is kept


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str, sent: Counter | None = None) -> None:
        self.producer = producer
        self.topic = topic
        self.sent = sent  # speed_dlq_sent{reason}
        # Each send in flight with what to send instead if the broker finds it too large.
        self._futures: list[tuple[Any, tuple[bytes | None, bytes | None, list[Header]]]] = []

    def send(
        self,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        origin: tuple[str, int, int, int],
    ) -> None:
        topic, partition, offset, timestamp = origin
        origin_values = (topic, str(partition), str(offset), str(timestamp))
        headers = [
            (REASON_HEADER, reason.encode("utf-8")),
            *((name, v.encode()) for name, v in zip(ORIGIN_HEADERS, origin_values, strict=True)),
        ]
        cut = _cut(key, value, headers, MAX_KEY_BYTES, MAX_RECORD_BYTES - MAX_KEY_BYTES)
        letter = (key, value, headers)
        if len(key or b"") + len(value or b"") > MAX_RECORD_BYTES:
            letter = cut
        try:
            future = self._send(*letter)
        except MessageSizeTooLargeError:  # the record and its headers exceed the request size
            future = self._send(*cut)
        # If the broker refuses it as too large (its message.max.bytes is lower), smaller.
        self._futures.append((future, _cut(key, value, headers, 1024, 16_384)))
        if self.sent is not None:
            self.sent.labels(reason_label(reason)).inc()

    def _send(self, key: bytes | None, value: bytes | None, headers: list[Header]) -> Any:
        return self.producer.send(self.topic, key=key, value=value, headers=headers)

    def forget_pending(self) -> None:
        """Drop unacknowledged sends after a failed flush: the rewound batch sends them again
        (the DLQ may then hold a record twice; its origin headers identify it)."""
        self._futures = []

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every sent record is acknowledged; raise if one was not. A record the
        broker refuses as too large is sent again cut to its head (the partition goes on)."""
        if not self._futures:
            return
        self.producer.flush(timeout=timeout_s)
        futures, self._futures = self._futures, []
        resent = []
        for future, (key, value, headers) in futures:
            try:
                future.get(timeout=timeout_s)
            except MessageSizeTooLargeError:
                resent.append(self._send(key, value, headers))
        if resent:
            self.producer.flush(timeout=timeout_s)
            for future in resent:
                future.get(timeout=timeout_s)


Header = tuple[str, bytes]


def _cut(
    key: bytes | None, value: bytes | None, headers: list[Header], key_head: int, value_head: int
) -> tuple[bytes | None, bytes | None, list[Header]]:
    """The dead letter of a record too large to copy whole: the heads of its key and value,
    with the original sizes and digests in headers so the original can be found and checked."""
    extra: list[Header] = []
    for name, part, head in (("key", key, key_head), ("value", value, value_head)):
        if part is not None and len(part) > head:
            extra += [
                (f"{name}.truncated_from", str(len(part)).encode()),
                (f"{name}.sha256", hashlib.sha256(part).hexdigest().encode()),
            ]
    return (
        None if key is None else key[:key_head],
        None if value is None else value[:value_head],
        headers + extra,
    )
