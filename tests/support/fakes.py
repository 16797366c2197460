"""Stand-ins for the Kafka clients, to drive the speed layer's loop without a broker.

Only what ``SpeedLayer`` calls outside ``run`` is modelled: poll (scripted poll batches), seek,
pause and resume, assignment, log start and end offsets and positions for the consumer; send
and flush for the DLQ. :func:`poll_and_settle` takes the loop's step on one poll batch.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

if TYPE_CHECKING:
    from speed_layer.consumer import SpeedLayer

TOPIC = "tx"
LOG_APPEND_TIME = 1


class FakeConsumer:
    def __init__(self, partitions: list[int]) -> None:
        self.tps = {TopicPartition(TOPIC, p) for p in partitions}
        self.positions: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self.starts: dict[int, int] = {}
        self.paused_partitions: set[int] = set()
        self.offsets_error: Exception | None = None  # raised by beginning_offsets if set
        self.committed_offsets: dict[int, int] = {}  # the group's committed positions
        self.script: deque[list[Any]] = deque()  # what the next polls return, in order

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        """The next scripted poll batch (nothing once the script is done)."""
        return self.deliver(self.script.popleft()) if self.script else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp.partition] = offset

    def assignment(self) -> set[TopicPartition]:
        return self.tps

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp.partition]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_partitions.update(tp.partition for tp in tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_partitions.difference_update(tp.partition for tp in tps)

    def paused(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.paused_partitions}

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.offsets_error is not None:
            raise self.offsets_error
        return {tp: self.starts.get(tp.partition, 0) for tp in tps}

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.committed_offsets.get(tp.partition)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends.get(tp.partition, 0) for tp in tps}

    def deliver(self, records: list[Any]) -> dict[TopicPartition, list[Any]]:
        """A poll result of these records; positions move past them as poll() moves them."""
        polled: dict[TopicPartition, list[Any]] = {}
        for rec in records:
            polled.setdefault(TopicPartition(TOPIC, rec.partition), []).append(rec)
            self.positions[rec.partition] = rec.offset + 1
        return polled


def poll_and_settle(layer: SpeedLayer, records: list[Any]) -> int:
    """Take the loop's step on one poll batch of ``records`` and wait for every transaction
    in flight; returns the events they counted."""
    layer.consumer.script.append(records)  # type: ignore[attr-defined]
    return layer.poll_once(threading.Event()) + layer.pipeline.settle_all()


class FakeDLQ:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes | None, str, tuple]] = []
        self.flushed = 0

    def send(self, key: bytes | None, value: bytes | None, reason: str, origin: tuple) -> None:
        self.sent.append((key, value, reason, origin))

    def flush(self) -> None:
        self.flushed = len(self.sent)

    def forget_pending(self) -> None:
        pass


def event_record(
    partition: int,
    offset: int,
    account: str,
    timestamp: int,
    value: bytes | None = None,
    transaction_id: str | None = None,
) -> Any:
    """A ConsumerRecord of a valid event (or of ``value``), stamped with LogAppendTime; its
    TransactionID is ``t<partition>-<offset>`` unless given."""
    event = {
        "TransactionID": transaction_id or f"t{partition}-{offset}",
        "CreatedTime": 1_550_149_860_000,
        "SourceAccountID": account,
        "TargetAccountID": "z",
        "Amount": 10,
    }
    raw = value if value is not None else json.dumps(event).encode()
    return ConsumerRecord(
        TOPIC, partition, 0, offset, timestamp, LOG_APPEND_TIME, account.encode(), raw, [],
        None, -1, len(raw), -1,
    )  # fmt: skip
