"""Turn a poll batch into aggregate deltas, derived from the view declarations.

Runs once per poll batch inside the store transaction. Pure functions: the store supplies the
TransactionIDs it already knows; this module decides duplicates (first in log order wins) and
folds the survivors per view, keyed additionally by ingest bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.views import VIEWS, Key, Measures

Row = Mapping[str, Any]


def split_duplicates(rows: Iterable[Row], seen: set[str]) -> tuple[list[Row], int]:
    """Rows (in log order) whose TransactionID is not in ``seen``; adds the kept ids to it."""
    kept = []
    duplicates = 0
    for row in rows:
        tid = row["transaction_id"]
        if tid in seen:
            duplicates += 1
            continue
        seen.add(tid)
        kept.append(row)
    return kept, duplicates


def fold_rows(rows: list[Row], bucket_ms: int) -> dict[str, dict[Key, Measures]]:
    """Per view: {(view key..., ingest bucket): measures} over deduplicated rows.

    Each row carries the event columns plus ``kafka_ts``; the ingest bucket joins the view key
    so the serving merge can split speed rows exactly at a batch horizon.
    """

    def bucket_of(row: Row) -> Key:
        return (ingest_bucket(row["kafka_ts"], bucket_ms),)

    return {view.name: view.fold(rows, extra_key=bucket_of) for view in VIEWS}
