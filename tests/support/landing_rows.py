"""Hand-written landing rows for the landing writer's tests, one per log position."""

from __future__ import annotations

BUCKET = 1000  # the ingest bucket size the landing tests write with (ms)


def landing_row(partition: int, offset: int, kafka_ts: int) -> dict[str, object]:
    """The valid event at ``offset`` of ``partition``, its id named by its log position."""
    return {
        "transaction_id": f"{partition}-{offset}",
        "created_time": kafka_ts - 5,
        "source_account_id": "A",
        "target_account_id": "B",
        "amount_cents": offset,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": kafka_ts,
    }
