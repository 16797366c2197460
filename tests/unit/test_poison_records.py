"""A record the store refuses goes to the DLQ and the partition goes on (SQLite, no broker).

The store refuses one source account through a trigger, as a CHECK constraint or a value out
of a column's range would in production. The consumer loop's step is driven with a stand-in
consumer and DLQ; the store, its process, the landing zone and the fallback are the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import partition_state, view_tables
from speed_layer.consumer import SpeedLayer
from speed_layer.metrics import SpeedMetrics
from speed_layer.poison import is_record_error, split_by_record, store_reason
from speed_layer.store import PartitionBatch
from speed_layer.store_retry import FencedError
from tests.support.blocks import block_of, rows_of
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record, poll_and_settle

POISON = "refused"


def record(partition: int, offset: int, account: str, value: bytes | None = None) -> Any:
    return event_record(partition, offset, account, 1_000_000 + offset, value)


@pytest.fixture
def layer(tmp_path: Path) -> SpeedLayer:
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=2)
    speed = SpeedLayer(settings, FakeConsumer([0, 1]), FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    with speed.store.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON speed_account_minute "
                f"WHEN NEW.source_account_id = '{POISON}' "
                "BEGIN SELECT RAISE(ABORT, 'account refused'); END"
            )
        )
    speed.pipeline.take(speed.consumer.assignment())
    return speed


def counted(layer: SpeedLayer) -> tuple[int, dict[int, tuple[int, int, int]]]:
    table = view_tables["global_minute"]
    state = partition_state.c
    with layer.store.engine.connect() as conn:
        total = conn.execute(select(table.c.txn_count)).scalars().all()
        rows = conn.execute(
            select(state.kafka_partition, state.next_offset, state.events, state.rejected)
        )
        return sum(total), {p: (o, e, r) for p, o, e, r in rows}


def test_a_refused_record_is_dead_lettered_and_the_batch_goes_on(layer: SpeedLayer) -> None:
    p0 = [
        record(0, 0, "a"),
        record(0, 1, POISON),
        record(0, 2, "a", b"not json"),
        record(0, 3, "b"),
    ]
    p1 = [record(1, 0, "c"), record(1, 1, "c")]
    # The poll batch's transaction is refused as a whole: nothing is counted, and both
    # partitions are read again from the store's offsets.
    assert poll_and_settle(layer, p0 + p1) == 0
    assert counted(layer) == (0, {})
    # Polled again, the batch is applied in the loop's thread, record by record.
    assert poll_and_settle(layer, p0 + p1) == 4

    events, state = counted(layer)
    assert events == 4
    # partition -> (next offset, events, rejected): the malformed and the refused record.
    assert state == {0: (4, 2, 2), 1: (2, 2, 0)}
    dlq: FakeDLQ = layer.dlq  # type: ignore[assignment]
    reasons = {origin[2]: reason for _, _, reason, origin in dlq.sent}
    assert set(reasons) == {1, 2}
    assert reasons[1].startswith("store: ") and "account refused" in reasons[1]
    refused = next(s for s in dlq.sent if s[3][2] == 1)
    assert refused[:2] == (POISON.encode(), p0[1].value)
    assert refused[3] == (TOPIC, 0, 1, p0[1].timestamp)
    assert dlq.flushed == len(dlq.sent), "acknowledged before the offset moved past it"
    assert layer.guard.stored == {0: 4, 1: 2}

    # The next poll batch continues from there, in one transaction again.
    assert poll_and_settle(layer, [record(0, 4, "a")]) == 1
    assert counted(layer)[1][0] == (5, 3, 2)


def test_split_chains_offsets_and_carries_rejects_with_the_next_row() -> None:
    rows = [
        {"transaction_id": f"t{o}", "created_time": 0, "source_account_id": "a"}
        | {"target_account_id": "b", "amount_cents": 1, "kafka_partition": 0}
        | {"kafka_offset": o, "kafka_ts": 100 + o}
        for o in (11, 13)
    ]
    batch = PartitionBatch(0, 10, 15, block_of(rows), rejected=3, max_kafka_ts=114)
    stamps = {o: 100 + o for o in range(10, 15)}
    pieces = split_by_record(batch, stamps)
    spans = [(p.batch.expected_offset, p.batch.next_offset, p.batch.rejected) for p in pieces]
    assert spans == [(10, 12, 1), (12, 14, 1), (14, 15, 1)]
    assert [p.row_offset for p in pieces] == [11, 13, None]
    assert [rows_of(p.batch.rows) for p in pieces] == [[rows[0]], [rows[1]], []]
    assert [p.batch.max_kafka_ts for p in pieces] == [111, 113, 114]


def test_only_errors_a_record_can_cause_are_isolated() -> None:
    import sqlite3

    refused = IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("CHECK constraint failed"))
    busy = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    gone = OperationalError("INSERT ...", {}, sqlite3.OperationalError("no such table: x"))
    assert is_record_error(refused)
    assert not is_record_error(busy)  # transient: retried by the store
    assert not is_record_error(gone)  # every record would fail: stop instead
    assert not is_record_error(FencedError("moved"))
    assert store_reason(refused) == "store: CHECK constraint failed"
