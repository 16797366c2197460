"""A declared view's batch rows looked up by a prefix of its dimensions
(``serving.sorted_view``) equal a plain loop over the same rows: filter, group, reduce — and so
does the SQL path it stands in for (``BatchStore.sql_rows``' query shape)."""

from __future__ import annotations

from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.views import MeasureKind, View
from serving.row_query import RowQuery
from serving.sorted_view import SortedView
from tests.support.declared import declarations

VALUES = ["a", "b", "é", "zz"]
HOUR = 3_600_000


@st.composite
def cases(draw: st.DrawFn) -> tuple[View, list[tuple], RowQuery]:
    declared = DeclaredView.of(draw(declarations()))
    view = draw(st.sampled_from(declared.computed))
    window = view.window_ms
    row = st.tuples(
        *(st.sampled_from(VALUES) for _ in view.dimensions),
        st.integers(0, 30).map(lambda n: n * window),
        *(st.integers(0, 10**6) for _ in view.measures),
    )
    rows = draw(st.lists(row, max_size=80))
    depth = draw(st.integers(0, len(view.dimensions)))
    filters = {d: draw(st.sampled_from(VALUES)) for d in view.dimensions[:depth]}
    columns = [*view.dimensions[depth:], "window_start"]
    group_by = tuple(draw(st.lists(st.sampled_from(columns), unique=True)))
    coarser = draw(st.sampled_from([None, 86_400_000])) if "window_start" in group_by else None
    start = draw(st.integers(0, 31)) * window
    end = start + draw(st.integers(0, 31)) * window
    return view, rows, RowQuery.of(view, start, end, group_by, filters, coarser)


def by_loops(view: View, rows: list[tuple], q: RowQuery) -> dict[tuple, tuple]:
    dims = list(view.dimensions)
    out: dict[tuple, list[int]] = {}
    for row in rows:
        named: dict[str, Any] = dict(zip([*dims, "window_start"], row, strict=False))
        if not q.start_ms <= named["window_start"] < q.end_ms:
            continue
        if any(named[d] != v for d, v in q.filters):
            continue
        if q.window_ms:
            named["window_start"] -= named["window_start"] % q.window_ms
        key = tuple(named[c] for c in q.group_by)
        measures = list(row[len(dims) + 1 :])
        if key not in out:
            out[key] = measures
            continue
        for i, m in enumerate(view.measures):
            if m.kind in (MeasureKind.COUNT, MeasureKind.SUM):
                out[key][i] += measures[i]
            elif m.kind is MeasureKind.MIN:
                out[key][i] = min(out[key][i], measures[i])
            else:
                out[key][i] = max(out[key][i], measures[i])
    return {k: tuple(v) for k, v in out.items()}


@settings(max_examples=200, deadline=None)
@given(cases())
def test_prefix_lookups_equal_plain_loops(case: tuple[View, list[tuple], RowQuery]) -> None:
    view, rows, q = case
    con = duckdb.connect()
    columns = [*view.dimensions, "window_start", *view.measure_names]
    types = [
        *("VARCHAR" for _ in view.dimensions),
        *("BIGINT" for _ in columns[len(view.dimensions) :]),
    ]
    con.execute(
        f"CREATE TABLE t ({', '.join(f'{c} {t}' for c, t in zip(columns, types, strict=True))})"
    )
    if rows:
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(columns))})", rows)
    held = SortedView.load(con, "t", view)
    got = held.rows(q)
    assert got is not None  # a prefix, and a small table: never sent to SQL
    assert dict(got) == by_loops(view, rows, q)
    assert len(got) == len(dict(got))  # one row per key


def test_a_filter_that_is_not_a_prefix_goes_to_sql() -> None:
    pairs = ViewDeclaration(
        name="pairs",
        dimensions=("SourceAccountID", "TargetAccountID"),
        window="hour",
        measures=("count",),
    )
    view = DeclaredView.of(pairs).totals
    con = duckdb.connect()
    measures = ", ".join(f"{m} BIGINT" for m in view.measure_names)
    con.execute(
        "CREATE TABLE t (source_account_id VARCHAR, target_account_id VARCHAR, "
        f"window_start BIGINT, {measures})"
    )
    held = SortedView.load(con, "t", view)
    assert held.rows(RowQuery.of(view, 0, HOUR, (), {"target_account_id": "a"})) is None
    assert held.rows(RowQuery.of(view, 0, HOUR, (), {"source_account_id": "a"})) == []
