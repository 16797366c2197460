"""The poll loop overlaps a batch's store transaction with the next poll batch: the next batch
is cut from where the one in flight ends, and a transaction that turns out fenced has the
batch prepared meanwhile dropped and every partition read again from the store.

Stand-in Kafka clients (``tests.support.fakes``), a real SQLite store and landing zone; the
oracle folds the delivered events with plain loops (``tests.support.oracle``).
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from lambda_contracts.events import parse_event
from lambda_contracts.landing_files import landing_row
from lambda_contracts.settings import Settings
from speed_layer.consumer import SpeedLayer
from speed_layer.metrics import SpeedMetrics
from speed_layer.store import PartitionBatch
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record
from tests.support.oracle import oracle_views
from tests.unit.test_speed_store_properties import stored_views

NOW_MS = 1_700_000_000_000
BUCKET_MS = 1000


class ScriptedConsumer(FakeConsumer):
    """A FakeConsumer whose ``poll`` hands out scripted poll batches, then nothing."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(partitions)
        self.script: deque[list[Any]] = deque()

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        return self.deliver(self.script.popleft()) if self.script else {}


def new_layer(tmp_path: Path) -> SpeedLayer:
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=1, bucket_ms=BUCKET_MS)
    consumer = ScriptedConsumer([0])
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    layer.take(consumer.assignment())
    return layer


def records(first: int, last: int) -> list[Any]:
    return [event_record(0, o, f"a{o % 3}", NOW_MS + o) for o in range(first, last + 1)]


def rows_of(recs: list[Any]) -> list[dict[str, Any]]:
    return [
        landing_row(parse_event(r.value), r.partition, r.offset, r.timestamp)  # type: ignore[arg-type]
        for r in recs
    ]


def stored_events(layer: SpeedLayer) -> int:
    with layer.store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT sum(events) FROM speed_partition_state").scalar()


def test_batches_in_flight_chain_and_each_event_counts_once(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: ScriptedConsumer = layer.consumer  # type: ignore[assignment]
    delivered = records(0, 119)
    consumer.script.extend([delivered[:50], delivered[50:90], delivered[90:]])
    stop = threading.Event()
    counted = [layer._poll_once(stop) for _ in range(4)]  # the 4th poll is empty: it settles
    assert counted == [0, 50, 40, 30]  # each poll accounts for the transaction before it
    assert layer.store.load_offsets() == {0: 120}
    assert stored_events(layer) == 120
    assert stored_views(layer.store.engine) == oracle_views(rows_of(delivered), bucket_ms=BUCKET_MS)


def test_a_fenced_transaction_drops_the_batch_prepared_meanwhile(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: ScriptedConsumer = layer.consumer  # type: ignore[assignment]
    delivered = records(0, 4)
    # Another process counted offsets 0-2 first: this one's transaction of 0-2 is fenced.
    layer.store.apply([PartitionBatch(0, None, 3, rows_of(delivered[:3]), 0, NOW_MS + 2)])
    consumer.script.extend([delivered[:3], delivered[3:]])
    stop = threading.Event()
    assert layer._poll_once(stop) == 0  # 0-2 submitted
    assert layer._poll_once(stop) == 0  # 3-4 prepared; 0-2 fenced: 3-4 dropped, re-sought
    assert consumer.positions[0] == 0  # the lower cursor: nothing landed durably yet
    assert layer.store.load_offsets() == {0: 3}
    consumer.script.append(delivered)  # read again from the cursors
    layer.verify_log_starts()
    layer._poll_once(stop)
    layer._poll_once(stop)
    assert layer.store.load_offsets() == {0: 5}
    assert stored_events(layer) == 5
    assert stored_views(layer.store.engine) == oracle_views(rows_of(delivered), bucket_ms=BUCKET_MS)
    assert layer.metrics.registry.get_sample_value("speed_fenced_commits_total") == 1


def test_a_rebalance_waits_for_the_transaction_in_flight(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: ScriptedConsumer = layer.consumer  # type: ignore[assignment]
    consumer.script.append(records(0, 9))
    layer._poll_once(threading.Event())  # in flight
    layer.release({TopicPartition(TOPIC, 0)})  # the next owner must find it committed
    assert layer.store.load_offsets() == {0: 10}
    assert stored_events(layer) == 10
