"""Speed-layer folding: dedup in log order and per-ingest-bucket keys."""

from __future__ import annotations

from speed_layer.aggregation import fold_rows, split_duplicates


def r(tid: str, cents: int, kafka_ts: int, account: str = "A") -> dict[str, object]:
    return {
        "transaction_id": tid,
        "created_time": 60_000,
        "source_account_id": account,
        "target_account_id": "Z",
        "amount_cents": cents,
        "kafka_ts": kafka_ts,
    }


def test_duplicates_are_counted_not_summed_first_wins() -> None:
    seen = {"old"}
    kept, dups = split_duplicates([r("old", 1, 0), r("a", 5, 0), r("a", 9, 0), r("b", 2, 0)], seen)
    assert [k["amount_cents"] for k in kept] == [5, 2]
    assert dups == 2
    assert seen == {"old", "a", "b"}


def test_ingest_bucket_is_part_of_the_speed_key() -> None:
    rows = [r("a", 5, 1_000), r("b", 7, 299_999), r("c", 11, 300_000)]
    folded = fold_rows(rows, bucket_ms=300_000)
    assert folded["global_minute"] == {
        (60_000, 0): (2, 12, 5, 7),
        (60_000, 300_000): (1, 11, 11, 11),
    }
    assert folded["account_minute"][("A", 60_000, 0)] == (2, 12, 5, 7)
