"""Days-old backlogs for the dedup eviction checks, one id per record at a fixed step, and
their poll batches applied to a speed store: on SQLite in the unit tests, on PostgreSQL in the
integration tests."""

from __future__ import annotations

from sqlalchemy import select

from lambda_contracts.store_schema import dedup
from speed_layer.store import PartitionBatch, SpeedStore
from tests.support.blocks import block_of
from tests.support.streams import Record

DEDUP_MS = 90_000  # a 90 s horizon
BUCKET_MS = 60_000  # 1-minute buckets
DAY_MS = 24 * 3600 * 1000
TOPIC = "tx"
STEP_MS = 20_000


def record(tid: str, partition: int, offset: int, ts: int, cents: int = 100) -> Record:
    return {
        "transaction_id": tid,
        "created_time": ts - 5_000,
        "source_account_id": f"acct{partition}",
        "target_account_id": "z",
        "amount_cents": cents,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": ts,
    }


def backlog(partition: int, start_ts: int, count: int) -> list[Record]:
    """One partition's old records, one id each, STEP_MS apart."""
    return [record(f"p{partition}-{i}", partition, i, start_ts + i * STEP_MS) for i in range(count)]


def apply_log(store: SpeedStore, partition: int, rows: list[Record], start: int | None) -> int:
    """Apply rows as one poll batch continuing from ``start``; return the duplicates found."""
    batch = PartitionBatch(
        partition=partition,
        expected_offset=start,
        next_offset=rows[-1]["kafka_offset"] + 1,
        rows=block_of(rows),
        max_kafka_ts=max(r["kafka_ts"] for r in rows),
    )
    return store.apply([batch]).duplicates


def remembered(store: SpeedStore) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(dedup.c.transaction_id)).scalars())
