"""The poll loop overlaps store transactions with the next poll batches: each batch is cut from
where the one before ends, each is accounted for in order, and a transaction that fails
(fenced, or refused for a record's data) has every partition read again from the store, a
refused batch then applied in the loop's thread, record by record.

The loop's own step drives it (``SpeedLayer.poll_once``, then ``settle_all``) with stand-in
Kafka clients (``tests.support.fakes``), a real SQLite store and landing zone; the oracle folds
the delivered events with plain loops (``tests.support.oracle``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from lambda_contracts.events import parse_event
from lambda_contracts.landing_files import landing_row
from lambda_contracts.settings import Settings
from speed_layer.consumer import SpeedLayer
from speed_layer.metrics import SpeedMetrics
from speed_layer.store import PartitionBatch
from tests.support.blocks import block_of
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record, poll_and_settle
from tests.support.oracle import oracle_views
from tests.support.speed_store import stored_views

NOW_MS = 1_700_000_000_000
BUCKET_MS = 1000


def new_layer(tmp_path: Path) -> SpeedLayer:
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=1, bucket_ms=BUCKET_MS)
    consumer = FakeConsumer([0])
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    layer.pipeline.take(consumer.assignment())
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
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    delivered = records(0, 119)
    consumer.script.extend([delivered[:50], delivered[50:90], delivered[90:]])
    stop = threading.Event()
    # Each batch is cut (and submitted) while the ones before it may still be in flight.
    counted = sum(layer.poll_once(stop) for _ in range(3)) + layer.pipeline.settle_all()
    assert counted == 120
    assert layer.store.load_offsets() == {0: 120}
    assert stored_events(layer) == 120
    assert stored_views(layer.store.engine) == oracle_views(rows_of(delivered), bucket_ms=BUCKET_MS)


def test_a_fenced_transaction_has_every_partition_read_again(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    delivered = records(0, 4)
    # Another process counted offsets 0-2 first: this one's transaction of 0-2 is fenced; the
    # one of 3-4, cut from offset 3, follows the other process's and commits.
    layer.store.apply([PartitionBatch(0, None, 3, block_of(rows_of(delivered[:3])), 0, NOW_MS + 2)])
    consumer.script.extend([delivered[:3], delivered[3:]])
    stop = threading.Event()
    # 0-2 fenced; 3-4 counted, or fenced with it when both were joined into one transaction
    # (the second submitted before the first started); then every partition is sought again
    first = layer.poll_once(stop) + layer.poll_once(stop) + layer.pipeline.settle_all()
    assert consumer.positions[0] == 0  # the lower cursor: nothing landed durably yet
    assert layer.store.load_offsets() == ({0: 5} if first else {0: 3})
    # read again from the cursors: landed, and counted only if not counted before
    assert first + poll_and_settle(layer, delivered) == 2
    assert layer.store.load_offsets() == {0: 5}
    assert stored_events(layer) == 5
    assert stored_views(layer.store.engine) == oracle_views(rows_of(delivered), bucket_ms=BUCKET_MS)
    assert layer.metrics.registry.get_sample_value("speed_fenced_commits_total") == 1


def test_a_refused_batch_is_read_again_and_applied_record_by_record(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    with layer.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON speed_account_minute "
            "WHEN NEW.source_account_id = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'account refused'); END"
        )
    delivered = records(0, 9)
    delivered[4] = event_record(0, 4, "refused", NOW_MS + 4)
    consumer.script.extend([delivered[:6], delivered[6:]])
    stop = threading.Event()
    # 0-5 refused, 6-9 (cut from offset 6) fenced behind it: every partition is read again
    assert layer.poll_once(stop) + layer.poll_once(stop) + layer.pipeline.settle_all() == 0
    assert layer.store.load_offsets() == {}
    # applied in the loop's thread, record by record: the refused record apart
    assert poll_and_settle(layer, delivered) == 9
    assert layer.store.load_offsets() == {0: 10}
    dlq: FakeDLQ = layer.dlq  # type: ignore[assignment]
    assert [origin[2] for _, _, _, origin in dlq.sent] == [4]
    kept = [r for r in rows_of(delivered) if r["source_account_id"] != "refused"]
    assert stored_views(layer.store.engine) == oracle_views(kept, bucket_ms=BUCKET_MS)
    # and the next poll batch is counted as any other
    assert poll_and_settle(layer, records(10, 11)) == 2
    assert layer.store.load_offsets() == {0: 12}


def test_a_rebalance_waits_for_the_transaction_in_flight(tmp_path: Path) -> None:
    layer = new_layer(tmp_path)
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    consumer.script.append(records(0, 9))
    layer.poll_once(threading.Event())  # its transaction may still be in flight
    layer.pipeline.release({TopicPartition(TOPIC, 0)})  # the next owner must find it committed
    assert layer.store.load_offsets() == {0: 10}
    assert stored_events(layer) == 10
