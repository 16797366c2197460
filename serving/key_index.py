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
import pyarrow as pa

from lambda_contracts.buckets import floor_to
from lambda_contracts.views import Key, MeasureKind, Measures, View

REDUCERS: dict[MeasureKind, np.ufunc] = {
    MeasureKind.COUNT: np.add,
    MeasureKind.SUM: np.add,
    MeasureKind.MIN: np.minimum,
    MeasureKind.MAX: np.maximum,
}


def _int64(column: pa.ChunkedArray) -> np.ndarray:
    """A column of one chunk as int64 numpy (no copy where it is int64 already)."""
    return np.asarray(column.to_numpy(), dtype=np.int64)


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
        # Through Arrow, not fetchnumpy: DuckDB builds Arrow without the GIL, while its numpy
        # conversion holds the GIL for the whole result (~20 ms per million rows), and every
        # request of this worker waits that long at a publish.
        fetched = con.sql(f"SELECT {columns} FROM {table} ORDER BY {order}").to_arrow_table()
        fetched = fetched.combine_chunks()
        window_start = _int64(fetched.column("window_start"))
        measures = tuple(_int64(fetched.column(m)) for m in view.measure_names)
        if view.dimensions:
            dims = ", ".join(view.dimensions)
            counts = con.sql(
                f"SELECT {dims}, count(*) AS n FROM {table} GROUP BY {dims} ORDER BY {dims}"
            ).to_arrow_table()
            keys = list(zip(*(counts.column(d).to_pylist() for d in view.dimensions), strict=True))
            sizes = _int64(counts.column("n").combine_chunks())
        else:
            keys, sizes = [()], np.array([len(window_start)], dtype=np.int64)
        ends = np.cumsum(sizes).tolist()
        starts = [0, *ends][: len(ends)]  # a view with no rows has no key at all
        slices: dict[Key, tuple[int, int]] = dict(
            zip(keys, zip(starts, ends, strict=True), strict=True)
        )
        assert (ends[-1] if ends else 0) == len(window_start)
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
