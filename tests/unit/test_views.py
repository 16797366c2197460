"""View declarations: fold semantics, monoid laws, and SQL derived from the same declaration."""

from __future__ import annotations

import itertools
import random

import duckdb
import pytest

from lambda_contracts.views import (
    ACCOUNT_MINUTE,
    GLOBAL_MINUTE,
    VIEWS,
    MeasureKind,
)


def row(tid: str, account: str, created: int, cents: int) -> dict[str, object]:
    return {
        "transaction_id": tid,
        "created_time": created,
        "source_account_id": account,
        "target_account_id": "x",
        "amount_cents": cents,
    }


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        (MeasureKind.COUNT, [5, 7, 9], 3),
        (MeasureKind.SUM, [5, 7, 9], 21),
        (MeasureKind.MIN, [5, 2, 9], 2),
        (MeasureKind.MAX, [5, 2, 9], 9),
    ],
)
def test_measure_initial_and_combine(kind: MeasureKind, values: list[int], expected: int) -> None:
    parts = [kind.initial(v) for v in values]
    total = parts[0]
    for p in parts[1:]:
        total = kind.combine(total, p)
    assert total == expected


@pytest.mark.parametrize("kind", list(MeasureKind))
def test_combine_is_associative_and_commutative(kind: MeasureKind) -> None:
    rng = random.Random(7)
    for _ in range(200):
        a, b, c = (rng.randint(0, 10**9) for _ in range(3))
        assert kind.combine(kind.combine(a, b), c) == kind.combine(a, kind.combine(b, c))
        assert kind.combine(a, b) == kind.combine(b, a)


def test_fold_windows_by_minute_of_created_time() -> None:
    rows = [
        row("t1", "A", 60_000, 100),
        row("t2", "A", 60_500, 250),
        row("t3", "B", 119_999, 5),
        row("t4", "A", 120_000, 7),
    ]
    assert ACCOUNT_MINUTE.fold(rows) == {
        ("A", 60_000): (2, 350, 100, 250),
        ("B", 60_000): (1, 5, 5, 5),
        ("A", 120_000): (1, 7, 7, 7),
    }
    assert GLOBAL_MINUTE.fold(rows) == {(60_000,): (3, 355, 5, 250), (120_000,): (1, 7, 7, 7)}


def test_fold_of_parts_combined_equals_fold_of_whole() -> None:
    """Speed folds per batch and merges; that must equal folding everything at once."""
    rng = random.Random(3)
    rows = [
        row(str(i), rng.choice("ABC"), rng.randint(0, 600_000), rng.randint(1, 10**6))
        for i in range(500)
    ]
    for view in VIEWS:
        whole = view.fold(rows)
        merged: dict = {}
        for start in range(0, len(rows), 37):
            for key, value in view.fold(rows[start : start + 37]).items():
                merged[key] = view.combine(merged[key], value) if key in merged else value
        assert merged == whole


def test_batch_sql_computes_the_same_as_fold_on_duckdb() -> None:
    rng = random.Random(11)
    rows = [
        row(str(i), rng.choice("ABCD"), rng.randint(0, 900_000), rng.randint(0, 10**7))
        for i in range(1000)
    ]
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (transaction_id VARCHAR, created_time BIGINT, "
        "source_account_id VARCHAR, target_account_id VARCHAR, amount_cents BIGINT)"
    )
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", [tuple(r.values()) for r in rows])
    for view in (ACCOUNT_MINUTE, GLOBAL_MINUTE):
        n = len(view.key_columns)
        got = {tuple(r[:n]): tuple(r[n:]) for r in con.execute(view.batch_sql("events")).fetchall()}
        assert got == view.fold(rows)


def test_rollup_and_merge_sql_agree_with_python_combine() -> None:
    con = duckdb.connect()
    for view in VIEWS:
        for m in view.measures:
            a, b = 40, 12
            merged = con.execute(f"SELECT {m.kind.sql_merge(str(a), str(b), 'duckdb')}").fetchone()
            assert merged[0] == m.kind.combine(a, b)
            rolled = con.execute(
                f"SELECT {m.kind.sql_rollup('v')} FROM (VALUES (40), (12), (7)) t(v)"
            ).fetchone()
            expected = list(itertools.accumulate([40, 12, 7], m.kind.combine))[-1]
            assert rolled[0] == expected


def test_measures_are_addressed_by_their_label() -> None:
    assert [ACCOUNT_MINUTE.measure_index(x) for x in ("count", "sum", "min", "max")] == [0, 1, 2, 3]
    assert GLOBAL_MINUTE.labelled((3, 350, 50, 200)) == {
        "count": 3,
        "sum": 350,
        "min": 50,
        "max": 200,
    }
    with pytest.raises(ValueError):
        GLOBAL_MINUTE.measure_index("avg")  # derived, not stored
