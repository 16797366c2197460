"""A batch view held as sorted numpy columns, for lookups by a prefix of its dimensions.

A declared view is queried by some of its dimensions (``SourceAccountID=…``), grouped by the
others (a distinct count's counted ID) and by window. Through DuckDB SQL each such answer cost
about 1.4 ms (planning, and scanning the row group the key falls in): three times the API's
whole budget for the built-in views, which :class:`serving.key_index.KeyedArrays` answers in
microseconds. Here each dimension is held as int32 codes into its sorted distinct values (a
dict of those per dimension: accounts, not the rows' keys), the rows sorted by (codes,
window_start); a filter on the first k dimensions is k binary searches, and the slice is
grouped with numpy. The code order is the values' order (both sorted by code point), so the
slices are contiguous. Measures reduce with the ufunc of their kind, int64, exact.

A query this does not fit (a filter that is not a prefix, or a slice larger than
``MAX_SLICE_ROWS``: top-N over all keys) goes to SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lambda_contracts.buckets import floor_to
from lambda_contracts.views import Key, Measures, View
from serving.key_index import REDUCERS
from serving.row_query import RowQuery

# Past this many rows a slice is grouped faster by DuckDB than by numpy and Python tuples.
MAX_SLICE_ROWS = 20_000


@dataclass(frozen=True)
class SortedView:
    view: View
    values: tuple[np.ndarray, ...]  # per dimension: its distinct values, sorted (object)
    codes_of: tuple[dict[str, int], ...]  # per dimension: value -> code
    codes: tuple[np.ndarray, ...]  # per dimension: each row's code (int32), rows sorted
    window_start: np.ndarray
    measures: tuple[np.ndarray, ...]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, table: str, view: View) -> SortedView:
        """Fetch ``table`` (a loaded batch view) and sort it by the view key."""
        columns = ", ".join((*view.dimensions, "window_start", *view.measure_names))
        fetched = con.sql(f"SELECT {columns} FROM {table}").to_arrow_table().combine_chunks()
        values, codes_of, codes = [], [], []
        for d in view.dimensions:
            distinct = pc.unique(fetched.column(d))
            distinct = distinct.take(pc.sort_indices(distinct))  # code point order, as in SQL
            values.append(np.asarray(distinct.to_pylist(), dtype=object))
            codes_of.append({v: i for i, v in enumerate(values[-1].tolist())})
            codes.append(pc.index_in(fetched.column(d), value_set=distinct).to_numpy())
        window_start = _int64(fetched.column("window_start"))
        order = np.lexsort((window_start, *reversed(codes)))  # the last key sorts first
        return cls(
            view,
            tuple(values),
            tuple(codes_of),
            tuple(np.ascontiguousarray(c[order], dtype=np.int32) for c in codes),
            window_start[order],
            tuple(_int64(fetched.column(m))[order] for m in view.measure_names),
        )

    def rows(self, q: RowQuery) -> list[tuple[Key, Measures]] | None:
        """The rows ``q`` asks for, as ``BatchStore.sql_rows`` gives them; None when the query
        does not fit (its filters are not a prefix of the dimensions, or too many rows)."""
        dims = self.view.dimensions
        filters = q.filter_map
        depth = len(filters)
        if set(filters) != set(dims[:depth]):
            return None
        lo, hi = 0, len(self.window_start)
        for level, d in enumerate(dims[:depth]):
            code = self.codes_of[level].get(filters[d])
            if code is None:
                return []
            column = self.codes[level][lo:hi]
            lo, hi = (
                lo + int(np.searchsorted(column, code, "left")),
                lo + int(np.searchsorted(column, code, "right")),
            )
        if hi - lo > MAX_SLICE_ROWS:
            return None
        windows = self.window_start[lo:hi]
        inside = np.flatnonzero((windows >= q.start_ms) & (windows < q.end_ms)) + lo
        if not len(inside):
            return []
        keys = [self._column(c, inside, q.window_ms) for c in q.group_by]
        reducers = [REDUCERS[m.kind] for m in self.view.measures]
        if not keys:
            total = tuple(
                int(r.reduce(a[inside])) for r, a in zip(reducers, self.measures, strict=True)
            )
            return [((), total)]
        order = np.lexsort(tuple(reversed(keys)))
        sorted_keys = [k[order] for k in keys]
        change = np.zeros(len(order), dtype=bool)
        change[0] = True
        for k in sorted_keys:
            change[1:] |= k[1:] != k[:-1]
        heads = np.flatnonzero(change)
        values = [
            r.reduceat(a[inside][order], heads).tolist()
            for r, a in zip(reducers, self.measures, strict=True)
        ]
        labels = [self._labels(c, k[heads]) for c, k in zip(q.group_by, sorted_keys, strict=True)]
        return [
            (tuple(key), tuple(measures))
            for key, measures in zip(
                zip(*labels, strict=True), zip(*values, strict=True), strict=True
            )
        ]

    def _column(self, name: str, rows: np.ndarray, window_ms: int | None) -> np.ndarray:
        """A grouping column over ``rows``: a dimension's codes, or window_start (floored)."""
        if name == "window_start":
            windows = self.window_start[rows]
            return floor_to(windows, window_ms) if window_ms else windows
        return self.codes[self.view.dimensions.index(name)][rows]

    def _labels(self, name: str, column: np.ndarray) -> list:
        if name == "window_start":
            return column.tolist()
        return self.values[self.view.dimensions.index(name)][column].tolist()


def _int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(), dtype=np.int64)
