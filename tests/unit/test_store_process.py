"""The speed store's transactions run in a child process: same outcome, same errors, clean exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lambda_contracts.db import make_engine
from lambda_contracts.store_schema import metadata
from speed_layer.event_block import EventBlock
from speed_layer.poison import is_record_error
from speed_layer.store import PartitionBatch
from speed_layer.store_process import StoreProcess, StoreProcessError, decode, encode
from speed_layer.store_retry import FencedError
from tests.support.blocks import block_of, rows_of
from tests.support.oracle import oracle_views
from tests.support.speed_store import stored_views

BUCKET_MS = 60_000
HORIZON_MS = 3_600_000


def row(offset: int, tid: str, account: str, cents: int, partition: int = 0) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "created_time": 1_000 + offset,
        "source_account_id": account,
        "target_account_id": "Z",
        "amount_cents": cents,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": 10_000 + offset,
    }


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/speed.db"
    metadata.create_all(make_engine(url))
    return url


def test_encoding_keeps_every_field_and_column() -> None:
    batches = [
        PartitionBatch(
            3, None, 7, block_of([row(5, "a", "A", 1, 3), row(6, "b", "B", 2, 3)]), 1, 10_006
        ),
        PartitionBatch(4, 12, 13, EventBlock(), 1, 0),
    ]
    decoded = decode(encode(batches))
    fields = [(b.partition, b.expected_offset, b.next_offset, b.rejected) for b in decoded]
    assert fields == [(3, None, 7, 1), (4, 12, 13, 1)]
    assert [b.max_kafka_ts for b in decoded] == [10_006, 0]
    assert [rows_of(b.rows) for b in decoded] == [rows_of(b.rows) for b in batches]


def test_transactions_in_the_child_count_what_an_oracle_counts(store_url: str) -> None:
    rows = [row(o, f"t{o % 7}", f"A{o % 3}", 100 + o) for o in range(20)]  # ids repeat
    store = StoreProcess(store_url, "tx", BUCKET_MS, HORIZON_MS)
    try:
        first = store.apply([PartitionBatch(0, None, 10, block_of(rows[:10]), max_kafka_ts=10_009)])
        second = store.apply([PartitionBatch(0, 10, 20, block_of(rows[10:]), max_kafka_ts=10_019)])
    finally:
        store.close()
    distinct_ids = len({r["transaction_id"] for r in rows})
    assert first.events + second.events == distinct_ids
    assert first.duplicates + second.duplicates == len(rows) - distinct_ids
    expected = oracle_views(rows, dedup_horizon_ms=HORIZON_MS, bucket_ms=BUCKET_MS)
    assert stored_views(make_engine(store_url)) == expected


def test_the_child_raises_what_the_store_raised(store_url: str) -> None:
    store = StoreProcess(store_url, "tx", BUCKET_MS, HORIZON_MS)
    try:
        store.apply(
            [PartitionBatch(0, None, 1, block_of([row(0, "a", "A", 1)]), max_kafka_ts=10_000)]
        )
        with pytest.raises(FencedError):  # offset 0 is not where the partition stands
            store.apply(
                [PartitionBatch(0, 0, 2, block_of([row(1, "b", "A", 1)]), max_kafka_ts=10_001)]
            )
        with make_engine(store_url).begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON speed_account_minute "
                "WHEN NEW.source_account_id = 'refused' "
                "BEGIN SELECT RAISE(ABORT, 'account refused'); END"
            )
        with pytest.raises(Exception, match="account refused") as refused:
            store.apply([PartitionBatch(0, 1, 2, block_of([row(1, "b", "refused", 1)]), 0, 10_001)])
        assert is_record_error(refused.value)  # the loop isolates the record as before
    finally:
        store.close()


def test_close_ends_the_child_and_a_dead_child_is_an_error(store_url: str) -> None:
    store = StoreProcess(store_url, "tx", BUCKET_MS, HORIZON_MS)
    store.apply([PartitionBatch(0, None, 1, block_of([row(0, "a", "A", 1)]), max_kafka_ts=10_000)])
    child = store._proc
    store.close()
    assert child.exitcode == 0
    store = StoreProcess(store_url, "tx", BUCKET_MS, HORIZON_MS)
    store.apply([PartitionBatch(0, 1, 2, block_of([row(1, "b", "A", 1)]), max_kafka_ts=10_001)])
    store._proc.kill()
    store._proc.join()
    with pytest.raises(StoreProcessError, match="exited"):
        store.apply([PartitionBatch(0, 2, 3, block_of([row(2, "c", "A", 1)]), max_kafka_ts=10_002)])
    store.close()
