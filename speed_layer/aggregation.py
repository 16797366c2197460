"""Turn a poll batch into aggregate deltas, derived from the view declarations.

Runs once per poll batch inside the store transaction. Pure functions: the store's dedup insert
decides which rows count (the database arbitrates between processes); this module gives the
log order those decisions follow and folds the survivors per view, keyed additionally by
ingest bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.layout import LOG_ORDER
from lambda_contracts.views import VIEWS, Key, Measures

Row = Mapping[str, Any]


def log_order(row: Row) -> tuple[int, ...]:
    """The position of a record in log order (``LOG_ORDER``: Kafka timestamp, partition,
    offset): "first in log order wins" means first by this key, in both layers."""
    return tuple(row[column] for column in LOG_ORDER)


def fold_rows(rows: list[Row], bucket_ms: int) -> dict[str, dict[Key, Measures]]:
    """Per view: {(view key..., ingest bucket): measures} over deduplicated rows.

    Each row carries the event columns plus ``kafka_ts``; the ingest bucket joins the view key
    so the serving merge can split speed rows exactly at a batch horizon.
    """

    buckets = [(ingest_bucket(row["kafka_ts"], bucket_ms),) for row in rows]
    return {view.name: view.fold(rows, extra_keys=buckets) for view in VIEWS}
