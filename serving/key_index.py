"""A batch view held as numpy arrays sorted by its key: a lookup for one key (one account, or
the global view) is a slice and two binary searches, not a scan.

DuckDB keeps a table's rows in row groups of ~120k rows and prunes them by min/max only, so
each per-account query scanned a whole row group: milliseconds per answer not in the cache.
Here the rows of a version are fetched once, sorted by (dimensions, window_start); each key's
rows form one slice, found in a dict, and a range within it by binary search on window_start.
Measures are reduced with the numpy ufunc of their kind (counts and sums add, min and max
keep the extreme; int64, exact), the same monoid as everywhere else (:mod:`lambda_contracts.views`).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from lambda_contracts.buckets import floor_to
from lambda_contracts.views import Key, MeasureKind, Measures, View

REDUCERS: dict[MeasureKind, np.ufunc] = {
    MeasureKind.COUNT: np.add,
    MeasureKind.SUM: np.add,
    MeasureKind.MIN: np.minimum,
    MeasureKind.MAX: np.maximum,
}


@dataclass(frozen=True)
class KeyedArrays:
    view: View
    slices: dict[Key, tuple[int, int]]  # dimension values -> [first, end) row of that key
    window_start: np.ndarray
    measures: tuple[np.ndarray, ...]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, table: str, view: View) -> KeyedArrays:
        """Fetch ``table`` (a loaded batch view) sorted by the view key."""
        order = ", ".join(view.key_columns)
        columns = ", ".join(("window_start", *view.measure_names))
        fetched = con.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchnumpy()
        window_start = np.asarray(fetched["window_start"], dtype=np.int64)
        measures = tuple(np.asarray(fetched[m], dtype=np.int64) for m in view.measure_names)
        if view.dimensions:
            dims = ", ".join(view.dimensions)
            counts = con.execute(
                f"SELECT {dims}, count(*) FROM {table} GROUP BY {dims} ORDER BY {dims}"
            ).fetchall()
        else:
            counts = [(len(window_start),)]
        slices: dict[Key, tuple[int, int]] = {}
        first = 0
        for row in counts:
            slices[tuple(row[:-1])] = (first, first + row[-1])
            first += row[-1]
        assert first == len(window_start)
        return cls(view, slices, window_start, measures)

    def rows(
        self, key: Key, start_ms: int, end_ms: int, by_window: bool, window_ms: int | None
    ) -> list[tuple[Key, Measures]]:
        """The rows of ``key`` with window_start in [start, end): one total (key ``()``), or
        per window_start (floored to ``window_ms`` if given) as keys ``(window_start,)``."""
        first, end = self.slices.get(key, (0, 0))
        starts = self.window_start[first:end]
        lo = first + int(np.searchsorted(starts, start_ms, "left"))
        hi = first + int(np.searchsorted(starts, end_ms, "left"))
        if lo >= hi:
            return []
        reducers = [REDUCERS[m.kind] for m in self.view.measures]
        if not by_window:
            total = tuple(
                int(r.reduce(a[lo:hi])) for r, a in zip(reducers, self.measures, strict=True)
            )
            return [((), total)]
        windows = self.window_start[lo:hi]
        if window_ms:
            windows = floor_to(windows, window_ms)
        heads = np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]])  # sorted: runs
        values = [
            r.reduceat(a[lo:hi], heads).tolist()
            for r, a in zip(reducers, self.measures, strict=True)
        ]
        return [((w,), tuple(v)) for w, *v in zip(windows[heads].tolist(), *values, strict=True)]
