"""What keeps several speed processes on one store safe: a fixed lock order, dedup decided
under the store's write lock, and whole-transaction retry of transient errors only."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from lambda_contracts.db import make_engine
from speed_layer.store import PartitionBatch, SpeedStore
from speed_layer.store_retry import FencedError, is_transient, retry_transient
from tests.support.blocks import block_of
from tests.support.oracle import oracle_views
from tests.support.speed_store import stored_views


def row(tid: str, account: str, minute: int, partition: int, offset: int, ts: int) -> dict:
    return {
        "transaction_id": tid,
        "created_time": minute * 60_000,
        "source_account_id": account,
        "target_account_id": "z",
        "amount_cents": 100 + offset,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": ts,
    }


def batch(partition: int, rows: list[dict], expected: int | None = None) -> PartitionBatch:
    start = expected or 0
    return PartitionBatch(
        partition, expected, start + len(rows), block_of(rows), 0, rows[-1]["kafka_ts"]
    )


def test_postgres_transactions_take_the_dedup_lock_first() -> None:
    """Two processes deciding one id's copies at once would both count it, and two locking
    the same hot rows in opposite orders deadlock: on PostgreSQL every speed transaction
    takes the self-exclusive lock on the dedup table before anything else (SQLite has one
    writer at a time), and claims its ids in key order."""
    engine = make_engine("sqlite://")
    executed: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        executed.append(statement)

    # log order: minutes 9, 3, 7 and ids z, a, m -> rows arrive in descending key order
    rows = [
        row(t, acct, m, 0, i, 1000 + i)
        for i, (t, acct, m) in enumerate([("z", "b", 9), ("a", "a", 3), ("m", "c", 7)])
    ]
    store = SpeedStore(engine, "tx", 1000, 10_000)
    store.apply([batch(0, rows)])
    assert stored_views(engine) == oracle_views(rows, 10_000, 1000)
    writes = [s for s in executed if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert "speed_partition_state" in writes[0]  # the offsets first: SQLite's write lock
    [claim] = [s for s in writes if s.startswith("INSERT INTO speed_dedup")]
    assert "ORDER BY transaction_id ON CONFLICT" in claim
    rendered = store._statements.of(postgresql.dialect())
    assert rendered.lock == "LOCK TABLE speed_dedup IN SHARE ROW EXCLUSIVE MODE"


def test_a_transaction_failing_transiently_is_retried_whole() -> None:
    engine = make_engine("sqlite://")
    store = SpeedStore(engine, "tx", 1000, 10_000)
    rows = [row("a", "x", 1, 0, 0, 1000), row("a", "x", 1, 0, 1, 1001), row("b", "x", 1, 0, 2, 5)]
    real = store._count
    failures = iter(
        [OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))]
    )

    def flaky(conn, partition, kept, duplicates):  # type: ignore[no-untyped-def]
        failure = next(failures, None)
        if failure is not None:
            raise failure  # after the dedup claims and view upserts: they must roll back
        real(conn, partition, kept, duplicates)

    store._count = flaky  # type: ignore[method-assign]
    applied = store.apply([batch(0, rows)])
    assert (applied.events, applied.duplicates) == (2, 1)
    assert stored_views(engine) == oracle_views(rows, 10_000, 1000)


def test_a_fenced_commit_is_not_retried() -> None:
    engine = make_engine("sqlite://")
    store = SpeedStore(engine, "tx", 1000, 10_000)
    first = batch(0, [row("a", "x", 1, 0, 0, 1000)])
    store.apply([first])
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)

    with pytest.raises(FencedError):
        retry_transient(lambda: store.apply([first]), sleep=sleep)
    assert calls == []


def _wrapped(orig: Exception, invalidated: bool = False) -> DBAPIError:
    cls = IntegrityError if isinstance(orig, psycopg.IntegrityError) else OperationalError
    return cls("INSERT ...", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), True),
        (_wrapped(psycopg.errors.SerializationFailure("could not serialize")), True),
        (_wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),
        (_wrapped(psycopg.OperationalError("server closed the connection")), True),
        (_wrapped(psycopg.errors.ConnectionFailure("connection failure")), True),
        (_wrapped(sqlite3.OperationalError("database is locked")), True),
        (_wrapped(sqlite3.OperationalError("no such table: speed_dedup"), invalidated=True), True),
        (_wrapped(sqlite3.OperationalError("no such table: speed_dedup")), False),
        (_wrapped(psycopg.errors.UniqueViolation("duplicate key")), False),
        (_wrapped(psycopg.errors.UndefinedTable("relation does not exist")), False),
        (psycopg.errors.DeadlockDetected("unwrapped"), True),
        (FencedError("partition 0 moved"), False),
        (ValueError("a bug"), False),
    ],
)
def test_transient_errors_are_told_apart(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retry_backs_off_then_succeeds_or_gives_up() -> None:
    delays: list[float] = []
    outcomes = iter([_wrapped(psycopg.errors.DeadlockDetected("x"))] * 2 + [None])

    def action() -> str:
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return "done"

    assert retry_transient(action, sleep=delays.append, base_delay_s=0.1) == "done"
    assert len(delays) == 2 and 0 <= delays[0] <= 0.1 and 0 <= delays[1] <= 0.2

    def always() -> None:
        raise _wrapped(psycopg.errors.SerializationFailure("x"))

    delays.clear()
    with pytest.raises(OperationalError):
        retry_transient(always, attempts=3, sleep=delays.append)
    assert len(delays) == 2


def test_a_batch_larger_than_one_statement_equals_the_oracle() -> None:
    """Poll batches of many thousand records span several multi-row statements per table
    (and several dedup waves): the split must neither lose nor double a row."""
    engine = make_engine("sqlite://")
    store = SpeedStore(engine, "tx", 1000, 10_000)
    rows = []
    for offset in range(45_000):
        # 20k ids a wave (more than one dedup statement holds), 8k accounts (more than one
        # view statement holds); an id's 2nd copy comes exactly the horizon after the 1st (a
        # duplicate), its 3rd twice the horizon after (a new event: the chain).
        ts = 1_000 + offset // 2
        rows.append(row(f"t{offset % 20_000}", f"a{offset % 8_000}", offset % 97, 0, offset, ts))
    applied = store.apply([batch(0, rows)])
    assert (applied.events, applied.duplicates) == (25_000, 20_000)
    assert stored_views(engine) == oracle_views(rows, 10_000, 1000)
