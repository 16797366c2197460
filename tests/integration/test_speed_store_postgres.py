"""Two speed processes on one PostgreSQL store: the database decides duplicates, and hot rows
are locked in one order, so concurrent transactions neither double-count nor deadlock.

Threads stand in for processes (each has its own engine and connections); a barrier starts
both transactions together so their statements interleave. No broker is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select

from lambda_contracts.db import make_engine
from lambda_contracts.store_schema import partition_state, view_tables
from speed_layer import store_retry
from speed_layer.store import PartitionBatch, SpeedStore
from tests.support import dedup_backlog as eviction
from tests.support.blocks import block_of
from tests.support.services import Postgres

pytestmark = [pytest.mark.integration]

ROUNDS = 15
IDS_PER_ROUND = 150


def row(tid: str, minute: int, partition: int, offset: int) -> dict:
    return {
        "transaction_id": tid,
        "created_time": minute * 60_000,
        "source_account_id": f"acct{minute % 7}",
        "target_account_id": "z",
        "amount_cents": 100,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": 1_000_000 + offset,
    }


def together(work: list[Callable[[], None]]) -> None:
    """Run the callables in threads started at once; re-raise the first failure."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]


def totals(engine: Engine) -> tuple[int, int, int]:
    table = view_tables["global_minute"]
    with engine.connect() as conn:
        counted = conn.execute(select(func.sum(table.c.txn_count))).scalar()
        events, dups = conn.execute(
            select(func.sum(partition_state.c.events), func.sum(partition_state.c.duplicates))
        ).one()
    return int(counted), int(events), int(dups)


@pytest.fixture
def two_stores(postgres: Postgres) -> list[SpeedStore]:
    url = postgres.new_database()
    engines = [make_engine(url), make_engine(url)]
    yield [SpeedStore(e, "tx", 300_000, 86_400_000) for e in engines]
    for e in engines:
        e.dispose()


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Make every database error surface: a hidden retry would mask a deadlock."""
    seen: list[BaseException] = []
    monkeypatch.setattr(store_retry, "is_transient", lambda exc: seen.append(exc) or False)
    return seen


def test_one_transaction_id_seen_by_two_processes_is_counted_once(
    two_stores: list[SpeedStore], no_retries: list[BaseException]
) -> None:
    """Copies of each id in two partitions, consumed at the same moment by two processes."""
    offsets = [None, None]
    for r in range(ROUNDS):
        ids = [f"r{r}-{i}" for i in range(IDS_PER_ROUND)]
        work = []
        for p, store in enumerate(two_stores):
            start = offsets[p] or 0
            rows = [row(t, i % 5, p, start + i) for i, t in enumerate(ids)]
            batch = PartitionBatch(
                p, offsets[p], start + len(rows), block_of(rows), 0, rows[-1]["kafka_ts"]
            )
            work.append(lambda s=store, b=batch: s.apply([b]))
            offsets[p] = start + len(rows)
        together(work)
    counted, events, dups = totals(two_stores[0].engine)
    assert counted == events == ROUNDS * IDS_PER_ROUND
    assert dups == ROUNDS * IDS_PER_ROUND


def test_hot_rows_in_opposite_fold_orders_do_not_deadlock(
    two_stores: list[SpeedStore], no_retries: list[BaseException]
) -> None:
    """The fold meets the same minutes ascending in one process and descending in the other."""
    offsets = [None, None]
    for r in range(ROUNDS):
        work = []
        for p, store in enumerate(two_stores):
            minutes = range(60) if p == 0 else range(59, -1, -1)
            start = offsets[p] or 0
            rows = [row(f"p{p}-r{r}-{m}", m, p, start + i) for i, m in enumerate(minutes)]
            batch = PartitionBatch(
                p, offsets[p], start + len(rows), block_of(rows), 0, rows[-1]["kafka_ts"]
            )
            work.append(lambda s=store, b=batch: s.apply([b]))
            offsets[p] = start + len(rows)
        together(work)
    assert no_retries == []
    counted, events, dups = totals(two_stores[0].engine)
    assert counted == events == ROUNDS * 2 * 60 and dups == 0


def test_the_horizon_rule_and_record_time_eviction_on_postgres(postgres: Postgres) -> None:
    """The dedup insert's horizon test and the eviction's record-time subquery are SQL the
    unit tests run on SQLite only: here they run on PostgreSQL, on a days-old backlog."""
    engine = make_engine(postgres.new_database())
    try:
        store = SpeedStore(engine, "tx", eviction.BUCKET_MS, eviction.DEDUP_MS)
        old = 1_000 * eviction.DAY_MS
        logs = {0: eviction.backlog(0, old, 40), 1: eviction.backlog(1, old, 20)}
        for p, log in logs.items():
            eviction.apply_log(store, p, log, None)
        record_time = min(log[-1]["kafka_ts"] for log in logs.values())
        assert store.record_time() == record_time
        store.expire_dedup()
        everything = [r for log in logs.values() for r in log]
        cut = record_time - eviction.DEDUP_MS
        assert eviction.remembered(store) == {
            r["transaction_id"] for r in everything if r["kafka_ts"] >= cut
        }
        last = logs[1][-1]  # copies exactly D and D + 1 ms after the kept one, then 0.5·D later
        tid, ts = last["transaction_id"], last["kafka_ts"]
        at_d = eviction.record(tid, 1, 20, ts + eviction.DEDUP_MS)
        after_d = eviction.record(tid, 1, 21, ts + eviction.DEDUP_MS + 1)
        chained = eviction.record(tid, 1, 22, after_d["kafka_ts"] + eviction.DEDUP_MS // 2)
        assert eviction.apply_log(store, 1, [at_d], 20) == 1
        assert eviction.apply_log(store, 1, [after_d], 21) == 0  # more than D after the kept one
        assert eviction.apply_log(store, 1, [chained], 22) == 1  # within D of the second
    finally:
        engine.dispose()
