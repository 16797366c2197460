"""Landing files: the Parquet schema of the master dataset, its durable write, its reads.

Both writers of the landing zone use this — the speed layer (as it consumes) and the batch
layer's re-landing of a range from Kafka — so their files are interchangeable: same schema,
same key for the same offsets. A file is one whole-object ``put`` under its final key: on the
local backend that is temp, fsync, rename; on S3 the object appears whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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
) -> str:
    """Durably write rows (one partition, one bucket, offset order) named by their offsets;
    returns the key. Writing the same range again (a replay after a crash) is harmless."""
    table = pa.Table.from_pylist(list(rows), schema=LANDING_SCHEMA)
    return write_landing_table(layout, bucket_ms, partition, table)


def write_landing_table(layout: Layout, bucket_ms: int, partition: int, table: pa.Table) -> str:
    """``write_landing_file`` for rows already in an Arrow table (offset order)."""
    offsets = table.column("kafka_offset")
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    key = layout.landing_key(bucket_ms, partition, first, last)
    put_parquet(layout, key, table)
    return key


# Columns whose values repeat (accounts) are dictionary-encoded; a TransactionID is unique,
# and a dictionary of it is built only to be dropped: without it a landing file is written
# in 40 % of the time and is 25 % smaller (bench/README.md, 2026-11-28).
DICTIONARY_COLUMNS = ["source_account_id", "target_account_id"]


def put_parquet(layout: Layout, key: str, table: pa.Table) -> None:
    """``table`` as one Parquet object, written whole (a durable put on either backend)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, use_dictionary=DICTIONARY_COLUMNS)
    layout.store.put(key, sink.getvalue().to_pybytes())


def read_landing_file(layout: Layout, key: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A landing file's rows (all columns, or ``columns``), from whichever backend holds it."""
    return pq.read_table(
        layout.store.path(key),
        filesystem=layout.store.filesystem(),
        columns=list(columns) if columns is not None else None,
        schema=LANDING_SCHEMA,
    )


def read_landing_files(layout: Layout, keys: Sequence[str]) -> pa.Table:
    """The rows of many landing files in one table, read on pyarrow's thread pool: compaction
    merges hundreds of small files at a time, and opening them one by one is most of its
    cost. Rows keep no order across files."""
    return ds.dataset(
        [layout.store.path(k) for k in keys],
        schema=LANDING_SCHEMA,
        format="parquet",
        filesystem=layout.store.filesystem(),
    ).to_table()


def parquet_rows(layout: Layout, key: str) -> int:
    """How many rows a Parquet object holds, from its footer alone."""
    fs = layout.store.filesystem()
    with fs.open_input_file(layout.store.path(key)) as f:
        return pq.ParquetFile(f).metadata.num_rows
