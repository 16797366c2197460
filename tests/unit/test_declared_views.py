"""Laws of declared views: for random declarations and events, the views a declaration compiles
to, computed by SQL on DuckDB and on SQLite and combined by ``DeclaredView.answer``, equal a
plain reference (``tests/support/declared.py``) — over the stored shape, roll-ups, and rows
split between two sources (as batch below a horizon and speed above it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.views import View, keyed
from tests.support.declared import COLUMNS, WINDOW_MS, declarations, events, reference


def on_duckdb(view: View, rows: list[dict[str, Any]]) -> list:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (created_time BIGINT, source_account_id VARCHAR, "
        "target_account_id VARCHAR, amount_cents BIGINT)"
    )
    if rows:  # DuckDB refuses an empty executemany
        con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [_values(r) for r in rows])
    return keyed(con.execute(view.batch_sql("events")).fetchall(), len(view.key_columns))


def on_sqlite(view: View, rows: list[dict[str, Any]]) -> list:
    con = sqlite3.connect(":memory:")
    con.execute(
        "CREATE TABLE events (created_time INTEGER, source_account_id TEXT, "
        "target_account_id TEXT, amount_cents INTEGER)"
    )
    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [_values(r) for r in rows])
    return keyed(con.execute(view.batch_sql("events")).fetchall(), len(view.key_columns))


def _values(row: dict[str, Any]) -> tuple:
    return (
        row["created_time"],
        row["source_account_id"],
        row["target_account_id"],
        row["amount_cents"],
    )


def computed(declared: DeclaredView, parts: list[list[dict[str, Any]]], engine: Any) -> tuple:
    """Each part's views computed by ``engine`` on its own, the parts' rows side by side."""
    totals = [pair for part in parts for pair in engine(declared.totals, part)]
    sets = {
        s.label: [key for part in parts for key, _ in engine(s.view, part)] for s in declared.sets
    }
    return totals, sets


@settings(max_examples=60, deadline=None)
@given(declaration=declarations(), rows=events, cut=st.integers(0, 60))
def test_declared_views_equal_the_reference_on_both_engines(
    declaration: ViewDeclaration, rows: list[dict[str, Any]], cut: int
) -> None:
    declared = DeclaredView.of(declaration)
    dims = tuple(sorted(declaration.dimensions))
    columns = tuple(COLUMNS[d] for d in dims)
    window_ms = WINDOW_MS[declaration.window]
    for engine in (on_duckdb, on_sqlite):
        for parts in ([rows], [rows[:cut], rows[cut:]]):
            totals, sets = computed(declared, parts, engine)
            stored = declared.answer(totals, sets, columns, window_ms)
            assert stored == reference(declaration, rows, dims, window_ms)
            whole = declared.answer(totals, sets)
            assert whole == reference(declaration, rows, (), None)
            for kept in range(len(dims)):  # roll up: fewer dimensions, by day
                by = dims[kept:]
                rolled = declared.answer(totals, sets, tuple(COLUMNS[d] for d in by), 86_400_000)
                assert rolled == reference(declaration, rows, by, 86_400_000)


def test_a_version_has_storage_of_its_own() -> None:
    base = {"dimensions": ("TargetAccountID",), "window": "hour", "measures": ("count",)}
    one = DeclaredView.of(ViewDeclaration(name="received", **base))
    other = DeclaredView.of(ViewDeclaration(name="received", **{**base, "window": "day"}))
    renamed = DeclaredView.of(ViewDeclaration(name="got", **base))
    names = {v.name for d in (one, other, renamed) for v in d.computed}
    assert len(names) == 3
    assert all(len(n) <= 63 and n.isidentifier() for n in names)


def test_distinct_sets_are_keyed_by_the_counted_field() -> None:
    declared = DeclaredView.of(
        ViewDeclaration(
            name="counterparties",
            dimensions=("SourceAccountID",),
            window="hour",
            measures=("distinct(TargetAccountID)", "sum"),
            amount_min="100.00",
        )
    )
    (distinct,) = declared.sets
    assert distinct.view.dimensions == ("source_account_id", "target_account_id")
    assert distinct.view.amount_min_cents == declared.totals.amount_min_cents == 10_000
    assert declared.labels == ("distinct_TargetAccountID", "sum")
    assert [m.label for m in declared.totals.measures] == ["count", "sum"]
