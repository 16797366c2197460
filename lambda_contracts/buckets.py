"""Time arithmetic shared by all layers: ingest buckets and event-time windows.

An ingest bucket is floor(Kafka LogAppendTime / bucket size). The topic uses LogAppendTime, so a
record's bucket is fixed by the broker and is the same for every reader and every replay; it is
the unit in which the batch horizon advances (Summingbird's BatchID).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T", bound=Any)


def floor_to(ts_ms: T, size_ms: int) -> T:
    """Start of the size_ms-long interval that contains ts_ms (epoch ms): the one flooring
    rule of buckets and windows. Written with operators only, so ``ts_ms`` may be an int, a
    NumPy array or a SQLAlchemy column expression."""
    return ts_ms - ts_ms % size_ms  # type: ignore[operator, no-any-return]


def floor_sql(column: str, size_ms: int) -> str:
    """:func:`floor_to` as SQL text over a column (Spark, DuckDB, SQLite, PostgreSQL)."""
    return f"({column} - {column} % {int(size_ms)})"


def ingest_bucket(kafka_ts_ms: int, bucket_ms: int) -> int:
    """The ingest bucket of a record, named by its start time in epoch ms."""
    return floor_to(kafka_ts_ms, bucket_ms)


def ms_to_iso(ts_ms: int | None) -> str | None:
    """UTC ISO 8601 rendering of an epoch-ms instant (None stays None)."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
