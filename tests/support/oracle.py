"""The test oracle: what every view must contain, written plainly and independently.

It shares nothing with the production code but the input rows: no ``View.fold``, no measure
combine, no SQL. It spells out the two declared views of ``lambda_contracts/views.py`` and the
dedup rule of the design, so it can referee the speed layer, the batch layer and the serving
merge alike. If a view is declared in the contracts, it must be added here by hand (a unit
test checks that the names match).

The dedup rule: records are taken in log order — (Kafka timestamp, partition, offset); a copy
is a duplicate when a kept copy with the same TransactionID came at most ``dedup_horizon_ms``
before it (by Kafka timestamp). Copies further apart are distinct events. "Kept" matters: the
comparison is with the last kept copy, not the last one seen (copies at 0, 1.5·D, 2·D: the
first two count). Written here again on purpose, not imported from ``lambda_contracts.dedup``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_DEDUP_HORIZON_MS = 24 * 3600 * 1000  # the platform's default; pass the run's own
MINUTE_MS = 60_000

Key = tuple[Any, ...]
Stats = tuple[int, int, int, int]  # count, sum, min, max of the amount in cents


def kept_rows(
    rows: Iterable[Mapping[str, Any]], dedup_horizon_ms: int = DEFAULT_DEDUP_HORIZON_MS
) -> list[Mapping[str, Any]]:
    """The rows that count, in log order, by the dedup rule above."""
    ordered = sorted(rows, key=lambda r: (r["kafka_ts"], r["kafka_partition"], r["kafka_offset"]))
    last_kept_ts: dict[str, int] = {}
    kept = []
    for row in ordered:
        tid = row["transaction_id"]
        if tid in last_kept_ts and row["kafka_ts"] - last_kept_ts[tid] <= dedup_horizon_ms:
            continue
        last_kept_ts[tid] = row["kafka_ts"]
        kept.append(row)
    return kept


def oracle_views(
    rows: Iterable[Mapping[str, Any]],
    dedup_horizon_ms: int = DEFAULT_DEDUP_HORIZON_MS,
    bucket_ms: int | None = None,
) -> dict[str, dict[Key, Stats]]:
    """{view name: {key: (count, sum, min, max)}} for landing rows (with their kafka_* fields).

    Keys are ``(source_account_id, window_start)`` for ``account_minute`` and
    ``(window_start,)`` for ``global_minute``. With ``bucket_ms`` each key also ends with the
    ingest bucket (floor of the Kafka timestamp), as the speed store keys its rows.
    """
    amounts: dict[str, dict[Key, list[int]]] = {"account_minute": {}, "global_minute": {}}
    for row in kept_rows(rows, dedup_horizon_ms):
        minute = row["created_time"] - row["created_time"] % MINUTE_MS
        extra: Key = ()
        if bucket_ms is not None:
            extra = (row["kafka_ts"] - row["kafka_ts"] % bucket_ms,)
        account_key = (row["source_account_id"], minute, *extra)
        global_key = (minute, *extra)
        amounts["account_minute"].setdefault(account_key, []).append(row["amount_cents"])
        amounts["global_minute"].setdefault(global_key, []).append(row["amount_cents"])
    return {
        name: {key: (len(v), sum(v), min(v), max(v)) for key, v in per_key.items()}
        for name, per_key in amounts.items()
    }
