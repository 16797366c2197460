"""The oracle itself, on cases small enough to check by hand, and its coverage of the views."""

from __future__ import annotations

from lambda_contracts.views import VIEWS
from tests.support.oracle import oracle_views


def rec(tid: str, account: str, created: int, cents: int, ts: int, offset: int) -> dict:
    return {
        "transaction_id": tid,
        "created_time": created,
        "source_account_id": account,
        "target_account_id": "z",
        "amount_cents": cents,
        "kafka_partition": 0,
        "kafka_offset": offset,
        "kafka_ts": ts,
    }


def test_the_oracle_spells_out_every_declared_view() -> None:
    assert set(oracle_views([])) == {v.name for v in VIEWS}


def test_first_copy_in_log_order_wins_within_the_horizon_only() -> None:
    records = [
        rec("t1", "A", 60_000, 100, ts=1_000, offset=0),
        rec("t1", "A", 60_000, 999, ts=1_010, offset=1),  # duplicate: 10 ms after the kept one
        rec("t2", "B", 119_999, 5, ts=1_020, offset=2),
        rec("t1", "A", 125_000, 7, ts=1_111, offset=3),  # 111 ms after the kept copy: new event
    ]
    views = oracle_views(list(reversed(records)), dedup_horizon_ms=100)  # order of input is moot
    assert views["account_minute"] == {
        ("A", 60_000): (1, 100, 100, 100),
        ("B", 60_000): (1, 5, 5, 5),
        ("A", 120_000): (1, 7, 7, 7),
    }
    assert views["global_minute"] == {(60_000,): (2, 105, 5, 100), (120_000,): (1, 7, 7, 7)}
    by_bucket = oracle_views(records, dedup_horizon_ms=100, bucket_ms=1_100)
    assert by_bucket["global_minute"] == {
        (60_000, 0): (2, 105, 5, 100),
        (120_000, 1_100): (1, 7, 7, 7),
    }
    assert oracle_views(records, dedup_horizon_ms=200)["global_minute"] == {
        (60_000,): (2, 105, 5, 100)
    }
