"""Laws of declared views: for random declarations and events, the views a declaration compiles
to, computed by SQL on DuckDB and on SQLite and combined by ``DeclaredView.answer``, equal a
plain reference written here — over the stored shape, roll-ups, and rows split between two
sources (as batch below a horizon and speed above it).

The reference shares nothing with the production code: no View, no SQL, no merge.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.views import View, keyed

COLUMNS = {"SourceAccountID": "source_account_id", "TargetAccountID": "target_account_id"}
WINDOW_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
AMOUNTS = ("0", "0.01", "5", "12.50", "20", "49.99")


@st.composite
def declarations(draw: st.DrawFn) -> ViewDeclaration:
    dims = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True, max_size=2))
    plain = ["count", "sum", "min", "max"]
    distinct = [f"distinct({f})" for f in COLUMNS if f not in dims]
    measures = draw(st.lists(st.sampled_from(plain + distinct), unique=True, min_size=1))
    low = draw(st.none() | st.sampled_from(AMOUNTS))
    high = draw(st.none() | st.sampled_from(AMOUNTS))
    if low is not None and high is not None and Decimal(low) > Decimal(high):
        low, high = high, low
    return ViewDeclaration(
        name="v",
        dimensions=tuple(dims),
        window=draw(st.sampled_from(sorted(WINDOW_MS))),
        measures=tuple(measures),
        amount_min=low,
        amount_max=high,
    )


events = st.lists(
    st.fixed_dictionaries(
        {
            "created_time": st.integers(0, 3 * 86_400_000),
            "source_account_id": st.sampled_from(["a", "b", "c"]),
            "target_account_id": st.sampled_from(["a", "x", "y", "z"]),
            "amount_cents": st.sampled_from([0, 1, 499, 500, 1250, 2000, 4999, 5000]),
        }
    ),
    max_size=60,
)


def reference(
    declaration: ViewDeclaration,
    rows: list[dict[str, Any]],
    group_by: tuple[str, ...],
    window_ms: int | None,
) -> dict[tuple, dict[str, int]]:
    """The declared view's rows by plain loops: filter, key, collect, measure."""
    low = None if declaration.amount_min is None else Decimal(declaration.amount_min) * 100
    high = None if declaration.amount_max is None else Decimal(declaration.amount_max) * 100
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if low is not None and row["amount_cents"] < low:
            continue
        if high is not None and row["amount_cents"] > high:
            continue
        key = tuple(row[COLUMNS[d]] for d in group_by)
        if window_ms is not None:
            key += (row["created_time"] - row["created_time"] % window_ms,)
        groups.setdefault(key, []).append(row)
    out = {}
    for key, members in groups.items():
        amounts = [m["amount_cents"] for m in members]
        answer: dict[str, int] = {}
        for measure in declaration.measures:
            if measure == "count":
                answer["count"] = len(members)
            elif measure == "sum":
                answer["sum"] = sum(amounts)
            elif measure == "min":
                answer["min"] = min(amounts)
            elif measure == "max":
                answer["max"] = max(amounts)
            else:
                field = measure[len("distinct(") : -1]
                answer[f"distinct_{field}"] = len({m[COLUMNS[field]] for m in members})
        out[key] = answer
    return out


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
