"""Writing one landing file: the Parquet schema of the master dataset and its durable write.

Both writers of the landing zone use this — the speed layer (as it consumes) and the batch
layer's re-landing of a range from Kafka — so their files are interchangeable: same schema,
same name for the same offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lambda_contracts.durable import write_atomic
from lambda_contracts.events import Transaction
from lambda_contracts.layout import LANDING_COLUMNS, Layout

_ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32()}
LANDING_SCHEMA = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in LANDING_COLUMNS])


def warm_up() -> None:
    """Make pyarrow's first conversion now: it imports pandas lazily (~0.5 s), which would
    otherwise stall the first landing flush while events wait to be counted."""
    pa.Table.from_pylist([], schema=LANDING_SCHEMA)


def landing_row(event: Transaction, partition: int, offset: int, kafka_ts: int) -> dict[str, Any]:
    """A valid event as a landing row: its columns plus where it sits in the log."""
    return place_row(event.to_row(), partition, offset, kafka_ts)


def place_row(row: dict[str, Any], partition: int, offset: int, kafka_ts: int) -> dict[str, Any]:
    """An event row (``Transaction.to_row``, ``event_row``) completed into a landing row, in
    place: where it sits in the log."""
    row["kafka_partition"] = partition
    row["kafka_offset"] = offset
    row["kafka_ts"] = kafka_ts
    return row


def write_landing_file(
    layout: Layout, bucket_ms: int, partition: int, rows: Sequence[dict[str, Any]]
) -> Path:
    """Durably write rows (one partition, one bucket, offset order) named by their offsets."""
    first, last = rows[0]["kafka_offset"], rows[-1]["kafka_offset"]
    table = pa.Table.from_pylist(list(rows), schema=LANDING_SCHEMA)
    target = layout.landing_file(bucket_ms, partition, first, last)
    write_atomic(target, lambda tmp: pq.write_table(table, tmp))
    return target
