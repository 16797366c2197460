"""The dead-letter topic's recent records, for the dashboard's rejects panel.

A consumer of no group follows the DLQ. Its first reading starts at the records of the last
``WINDOW_MS`` (by timestamp); each later one reads only what arrived since. It keeps the
counts per minute and reason label of the last ``WINDOW_MS`` and the latest ``LATEST``
records: both bounded whatever the DLQ's rate. A reading takes at most
``MAX_RECORDS_PER_READ`` new records, so a backlog is caught up over several readings rather
than in one request. A broker that cannot be reached makes the rejects unknown (None), as the
lag is in :mod:`serving.kafka_lag`. The app reads it through a
:class:`~serving.snapshot_cache.Refreshed`: requests get the last reading at once.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lambda_contracts.rejects import ORIGIN_HEADERS, REASON_HEADER, reason_label
from lambda_contracts.settings import Settings

WINDOW_MS = 3_600_000
MINUTE_MS = 60_000
LATEST = 20
MAX_RECORDS_PER_READ = 20_000
PREVIEW_CHARS = 120
# IDs and other long tokens in a reason or a value, shortened to their head on the page.
LONG_TOKEN = re.compile(r"[A-Za-z0-9_-]{17,}")


def shortened(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` cut to ``limit`` characters, each long token (an ID) to its first 8."""
    short = LONG_TOKEN.sub(lambda m: m.group()[:8] + "…", text)
    return short if len(short) <= limit else short[: limit - 1] + "…"


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    label: str
    partition: int | None  # where the rejected record was (its origin headers)
    offset: int | None
    rejected_at_ms: int  # the dead letter's timestamp
    preview: str


@dataclass(frozen=True)
class RejectsReading:
    by_minute: dict[int, dict[str, int]]  # minute -> label -> dead letters
    latest: tuple[DeadLetter, ...]  # newest first
    caught_up: bool  # False while a backlog is still being read


class DeadLetterTail:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._counts: dict[int, dict[str, int]] = {}
        self._latest: deque[DeadLetter] = deque(maxlen=LATEST)

    def read(self) -> RejectsReading | None:
        """What arrived since the last reading added (None if Kafka did not answer)."""
        with self._lock:
            return self._read()

    def _read(self) -> RejectsReading | None:
        try:
            consumer = self._consumer or self._follow()
            caught_up = self._read_new(consumer)
        except (KafkaError, AssertionError, OSError, ValueError):
            self._close_unlocked()  # the next reading starts over from the window
            return None
        now = int(self.clock() * 1000)
        oldest = now - now % MINUTE_MS - WINDOW_MS
        for minute in [m for m in self._counts if m < oldest]:
            del self._counts[minute]
        return RejectsReading(
            {m: dict(c) for m, c in sorted(self._counts.items())},
            tuple(reversed(self._latest)),
            caught_up,
        )

    def _follow(self) -> KafkaConsumer:
        """A consumer on the DLQ's partitions, at the first record of the last window."""
        consumer = KafkaConsumer(
            **self.settings.kafka_client_config,
            client_id="lambda-serving-dlq",
            enable_auto_commit=False,
            request_timeout_ms=3000,  # no topic auto-created by asking: the topics job makes it
        )
        self._consumer = consumer
        self._counts.clear()
        self._latest.clear()
        found = consumer.partitions_for_topic(self.settings.dlq_topic) or {0}
        tps = [TopicPartition(self.settings.dlq_topic, p) for p in sorted(found)]
        consumer.assign(tps)
        since = int(self.clock() * 1000) - WINDOW_MS
        starts = consumer.offsets_for_times({tp: since for tp in tps})
        ends = consumer.end_offsets(tps)
        for tp in tps:
            start = starts.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        return consumer

    def _read_new(self, consumer: KafkaConsumer) -> bool:
        """Read what arrived since the last reading, up to the bound; whether it reached the
        end offsets of the reading's start."""
        tps = list(consumer.assignment())
        ends = consumer.end_offsets(tps)
        taken = 0
        while taken < MAX_RECORDS_PER_READ:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                return True
            polled = consumer.poll(timeout_ms=500, max_records=MAX_RECORDS_PER_READ - taken)
            if not polled:
                return False  # the broker did not deliver in time: more on the next reading
            for records in polled.values():
                for record in records:
                    self._count(record)
            taken += sum(map(len, polled.values()))
        return False

    def _count(self, record: Any) -> None:
        headers = {k: v for k, v in record.headers or ()}
        reason = headers.get(REASON_HEADER, b"").decode("utf-8", "replace")
        label = reason_label(reason)
        minute = record.timestamp - record.timestamp % MINUTE_MS
        per_label = self._counts.setdefault(minute, {})
        per_label[label] = per_label.get(label, 0) + 1
        _, partition, offset, _ = (headers.get(h) for h in ORIGIN_HEADERS)
        self._latest.append(
            DeadLetter(
                shortened(reason),
                label,
                int(partition) if partition else None,
                int(offset) if offset else None,
                record.timestamp,
                shortened((record.value or b"").decode("utf-8", "replace")),
            )
        )

    def _close_unlocked(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close_unlocked()
