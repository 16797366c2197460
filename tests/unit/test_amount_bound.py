"""Sums cannot overflow: the amount bound times the event bound fits int64, tested at the bound."""

from __future__ import annotations

from decimal import Decimal

import duckdb
from sqlalchemy import insert

from lambda_contracts.db import make_engine
from lambda_contracts.events import (
    INT64_MAX,
    MAX_AMOUNT,
    MAX_AMOUNT_CENTS,
    MAX_EVENTS_PER_SUM,
    Rejection,
    Transaction,
    parse_event,
)
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import GLOBAL_MINUTE
from serving.row_query import RowQuery
from serving.speed_store import SpeedReader
from speed_layer.store import PartitionBatch, SpeedStore
from tests.support.blocks import block_of


def wire(amount: str) -> bytes:
    return (
        '{"TransactionID":"t","CreatedTime":60000,"SourceAccountID":"a",'
        f'"TargetAccountID":"b","Amount":{amount}}}'
    ).encode()


def test_the_bounds_are_consistent() -> None:
    assert MAX_AMOUNT * 100 == MAX_AMOUNT_CENTS
    assert MAX_AMOUNT_CENTS * MAX_EVENTS_PER_SUM <= INT64_MAX
    assert MAX_AMOUNT_CENTS * (MAX_EVENTS_PER_SUM + 1) > INT64_MAX
    assert MAX_EVENTS_PER_SUM >= 9_000_000_000  # a documented, generous per-sum event count


def test_the_largest_amount_is_accepted_and_round_trips_one_cent_more_is_not() -> None:
    event = parse_event(wire(f"{MAX_AMOUNT:.2f}"))
    assert isinstance(event, Transaction) and event.amount_cents == MAX_AMOUNT_CENTS
    again = parse_event(event.to_json_bytes())
    assert isinstance(again, Transaction) and again.amount_cents == MAX_AMOUNT_CENTS
    over = parse_event(wire(f"{MAX_AMOUNT + Decimal('0.01'):.2f}"))
    assert isinstance(over, Rejection) and over.reason.startswith("Amount:")
    assert isinstance(parse_event(wire("100000000000000")), Rejection)  # the old bound


def test_speed_store_sums_exactly_up_to_the_bound() -> None:
    """A view key already holding N-1 events of the largest amount takes the N-th exactly."""
    engine = make_engine("sqlite://")
    table = view_tables[GLOBAL_MINUTE.name]
    n = MAX_EVENTS_PER_SUM
    with engine.begin() as conn:
        conn.execute(
            insert(table).values(
                window_start=60_000,
                ingest_bucket=0,
                txn_count=n - 1,
                amount_sum=(n - 1) * MAX_AMOUNT_CENTS,
                amount_min=MAX_AMOUNT_CENTS,
                amount_max=MAX_AMOUNT_CENTS,
            )
        )
    row = {
        "transaction_id": "t",
        "created_time": 60_000,
        "source_account_id": "a",
        "target_account_id": "b",
        "amount_cents": MAX_AMOUNT_CENTS,
        "kafka_partition": 0,
        "kafka_offset": 0,
        "kafka_ts": 1,
    }
    SpeedStore(engine, "tx", 1000, 1000).apply([PartitionBatch(0, None, 1, block_of([row]))])
    [(_, measures)] = SpeedReader(engine, "tx").rows(RowQuery.of(GLOBAL_MINUTE, 0, 120_000), 0)
    assert measures == (n, n * MAX_AMOUNT_CENTS, MAX_AMOUNT_CENTS, MAX_AMOUNT_CENTS)


def test_rollup_sql_sums_exactly_up_to_the_bound() -> None:
    """The declared roll-up over partial sums at the bound (DuckDB, as serving reads batch rows)."""
    con = duckdb.connect()
    half = MAX_EVENTS_PER_SUM // 2
    con.execute(
        "CREATE TABLE parts AS SELECT * FROM (VALUES "
        f"(60000, {half}, {half * MAX_AMOUNT_CENTS}, 1, {MAX_AMOUNT_CENTS}), "
        f"(60000, {MAX_EVENTS_PER_SUM - half}, {(MAX_EVENTS_PER_SUM - half) * MAX_AMOUNT_CENTS}, "
        f"0, {MAX_AMOUNT_CENTS})) t(window_start, txn_count, amount_sum, amount_min, amount_max)"
    )
    sql = f"SELECT {', '.join(GLOBAL_MINUTE.rollup_expressions())} FROM parts"
    count, total, low, high = con.execute(sql).fetchone()
    assert (count, total) == (MAX_EVENTS_PER_SUM, MAX_EVENTS_PER_SUM * MAX_AMOUNT_CENTS)
    assert (low, high) == (0, MAX_AMOUNT_CENTS)
    assert isinstance(total, int)  # not a float: exact
