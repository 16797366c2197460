"""A synthetic landing zone at benchmark scale, written in the real layout and format.

Vectorised with numpy/pyarrow so 10M events take seconds. Per partition, Kafka timestamps
increase with offsets (LogAppendTime); ~2 % of records repeat an earlier TransactionID of the
same account (a conflicting duplicate later in the log).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lambda_contracts.landing_files import LANDING_SCHEMA, write_landing_table
from lambda_contracts.layout import Layout, PartitionProgress

FILE_ROWS = 500_000


def write_landing(
    layout: Layout,
    events: int,
    start_ts: int,
    span_ms: int,
    partitions: int,
    bucket_ms: int,
    accounts: int = 10_000,
    id_offset: int = 0,
    offset_base: dict[int, int] | None = None,
    seed: int = 7,
    file_rows: int = FILE_ROWS,
    duplicates: float = 0.02,
    late: float = 0.01,
    late_ms: int = 3_600_000,
) -> dict[int, int]:
    """Write ``events`` records; returns the next offset per partition.

    A ``duplicates`` share repeats an earlier TransactionID of this call; a ``late`` share has
    a CreatedTime up to ``late_ms`` before its place in the stream."""
    rng = np.random.default_rng(seed)
    ids = np.arange(id_offset, id_offset + events)
    dup = rng.random(events) < duplicates
    dup[: events // 100] = False
    ids[dup] = ids[dup] - rng.integers(1, events // 100 + 1, dup.sum())
    account = (ids * 2654435761 % accounts).astype(np.int64)
    partition = (account % partitions).astype(np.int32)
    created = start_ts + (ids - id_offset).clip(0) * span_ms // max(events, 1)
    created = created - rng.integers(0, late_ms, events) * (rng.random(events) < late)
    amount = rng.integers(1, 500_000, events)
    next_offsets = dict(offset_base or {})
    for p in range(partitions):
        mask = partition == p
        n = int(mask.sum())
        base = next_offsets.get(p, 0)
        offsets = np.arange(base, base + n)
        kafka_ts = start_ts + np.arange(n) * span_ms // max(n, 1)
        table = pa.table(
            {
                "transaction_id": pc.binary_join_element_wise(
                    "t", pa.array(ids[mask]).cast(pa.string()), ""
                ),
                "created_time": pa.array(created[mask]),
                "source_account_id": pa.array(account[mask] + 100_000).cast(pa.string()),
                "target_account_id": pa.array((account[mask] * 7 + 3) % accounts + 100_000).cast(
                    pa.string()
                ),
                "amount_cents": pa.array(amount[mask]),
                "kafka_partition": pa.array(np.full(n, p, dtype=np.int32)),
                "kafka_offset": pa.array(offsets),
                "kafka_ts": pa.array(kafka_ts),
            }
        ).cast(LANDING_SCHEMA)
        buckets = kafka_ts - kafka_ts % bucket_ms
        for bucket in np.unique(buckets):
            idx = np.nonzero(buckets == bucket)[0]
            for lo in range(0, len(idx), file_rows):
                chunk = table.take(pa.array(idx[lo : lo + file_rows]))
                write_landing_table(layout, int(bucket), p, chunk)
        next_offsets[p] = base + n
        layout.write_progress(PartitionProgress(p, base + n, start_ts + span_ms + bucket_ms))
    return next_offsets


def landing_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*.parquet"))
