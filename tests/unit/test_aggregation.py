"""Speed-layer aggregation in the store: per-ingest-bucket keys, and the dedup rule in log order."""

from __future__ import annotations

from lambda_contracts.db import make_engine
from speed_layer.store import PartitionBatch, SpeedStore
from tests.support.blocks import block_of


def r(
    tid: str, cents: int, kafka_ts: int, account: str = "A", offset: int = 0
) -> dict[str, object]:
    return {
        "kafka_partition": 0,
        "kafka_offset": offset,
        "transaction_id": tid,
        "created_time": 60_000,
        "source_account_id": account,
        "target_account_id": "Z",
        "amount_cents": cents,
        "kafka_ts": kafka_ts,
    }


def test_duplicates_are_counted_not_summed_first_wins_within_the_horizon() -> None:
    store = SpeedStore(make_engine("sqlite://"), "tx", bucket_ms=300_000, dedup_horizon_ms=100)
    first = [r("old", 1, 0, offset=0)]
    store.apply([PartitionBatch(0, None, 1, block_of(first))])
    # "old" again 100 ms later (a duplicate) and 101 ms after that (a new event); "a" twice
    rows = [r("old", 3, 100, offset=1), r("a", 5, 150, offset=2), r("a", 9, 150, offset=3)]
    rows += [r("b", 2, 160, offset=4), r("old", 4, 201, offset=5)]
    applied = store.apply([PartitionBatch(0, 1, 6, block_of(rows))])
    assert (applied.events, applied.duplicates) == (3, 2)
    with store.engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT sum(amount_sum) FROM speed_global_minute").scalar()
    assert total == 1 + 5 + 2 + 4


def test_the_first_copy_in_log_order_wins_timestamp_then_partition_then_offset() -> None:
    """Copies of one id in three partitions of one transaction: the kept copy is the one first
    by Kafka timestamp, then partition, then offset; its amount is the one summed."""
    store = SpeedStore(make_engine("sqlite://"), "tx", bucket_ms=300_000, dedup_horizon_ms=100)
    a = r("x", 1, 10) | {"kafka_partition": 1, "kafka_offset": 0}
    b = r("x", 2, 10) | {"kafka_partition": 0, "kafka_offset": 7}
    c = r("x", 4, 9) | {"kafka_partition": 2, "kafka_offset": 9}
    d = r("x", 8, 9) | {"kafka_partition": 2, "kafka_offset": 10}
    batches = [PartitionBatch(1, None, 1, block_of([a])), PartitionBatch(0, None, 8, block_of([b]))]
    applied = store.apply([*batches, PartitionBatch(2, None, 11, block_of([c, d]))])
    assert (applied.events, applied.duplicates) == (1, 3)
    with store.engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT sum(amount_sum) FROM speed_global_minute").scalar()
    assert total == 4
    # without c, d (stamped 9) is still first
    store = SpeedStore(make_engine("sqlite://"), "tx", bucket_ms=300_000, dedup_horizon_ms=100)
    store.apply([*batches, PartitionBatch(2, None, 11, block_of([d]))])
    with store.engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT sum(amount_sum) FROM speed_global_minute").scalar()
    assert total == 8
    store = SpeedStore(make_engine("sqlite://"), "tx", bucket_ms=300_000, dedup_horizon_ms=100)
    store.apply(batches)  # equal timestamps: the lower partition wins
    with store.engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT sum(amount_sum) FROM speed_global_minute").scalar()
    assert total == 2


def test_ingest_bucket_is_part_of_the_speed_key() -> None:
    store = SpeedStore(make_engine("sqlite://"), "tx", bucket_ms=300_000, dedup_horizon_ms=100)
    rows = [r("a", 5, 1_000, offset=0), r("b", 7, 299_999, offset=1)]
    rows += [r("c", 11, 300_000, offset=2)]
    store.apply([PartitionBatch(0, None, 3, block_of(rows))])
    with store.engine.connect() as conn:
        by_minute = conn.exec_driver_sql(
            "SELECT window_start, ingest_bucket, txn_count, amount_sum, amount_min, amount_max "
            "FROM speed_global_minute ORDER BY ingest_bucket"
        ).all()
        by_account = conn.exec_driver_sql(
            "SELECT source_account_id, window_start, ingest_bucket, txn_count, amount_sum, "
            "amount_min, amount_max FROM speed_account_minute ORDER BY ingest_bucket"
        ).all()
    assert [tuple(x) for x in by_minute] == [
        (60_000, 0, 2, 12, 5, 7),
        (60_000, 300_000, 1, 11, 11, 11),
    ]
    assert tuple(by_account[0]) == ("A", 60_000, 0, 2, 12, 5, 7)
