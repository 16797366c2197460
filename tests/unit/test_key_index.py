"""A batch view as sorted arrays answers per key exactly what a plain loop over its rows does,
also for a view with no rows (an early version, or a window with no events)."""

from __future__ import annotations

import duckdb
import pytest

from lambda_contracts.views import ACCOUNT_MINUTE, GLOBAL_MINUTE, View
from serving.key_index import KeyedArrays


def table(con: duckdb.DuckDBPyConnection, view: View, rows: list[tuple]) -> str:
    name = f"t_{view.name}"
    columns = [*(f"{d} VARCHAR" for d in view.dimensions), "window_start BIGINT"]
    columns += [f"{m} BIGINT" for m in view.measure_names]
    con.execute(f"CREATE TABLE {name} ({', '.join(columns)})")
    if rows:
        marks = ", ".join("?" * len(columns))
        con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    return name


@pytest.mark.parametrize("view", [ACCOUNT_MINUTE, GLOBAL_MINUTE], ids=lambda v: v.name)
def test_a_view_with_no_rows_answers_nothing(view: View) -> None:
    con = duckdb.connect()
    arrays = KeyedArrays.load(con, table(con, view, []), view)
    key = ("a",) if view.dimensions else ()
    assert arrays.rows(key, 0, 1 << 62, False, None) == []


def test_each_account_gets_exactly_its_rows() -> None:
    view = ACCOUNT_MINUTE
    rows = [
        (account, minute * 60_000, count, count * 100, 100, 100)
        for account, minutes in (("b", 3), ("a", 2), ("c", 1))
        for minute, count in zip(range(minutes), (1, 2, 3), strict=False)
    ]
    con = duckdb.connect()
    arrays = KeyedArrays.load(con, table(con, view, rows), view)
    for account in ("a", "b", "c", "zz"):
        mine = [r for r in rows if r[0] == account and 60_000 <= r[1] < 180_000]
        want = [((), (sum(r[2] for r in mine), sum(r[3] for r in mine), 100, 100))] if mine else []
        assert arrays.rows((account,), 60_000, 180_000, False, None) == want
