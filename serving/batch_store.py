"""Batch views through DuckDB: each published version loaded once into sorted in-memory tables.

One DuckDB connection per process with ``threads=1``: a lookup touches one or two row groups,
so parallel scan threads only add hand-offs, and the serving workers already use every core.
Each request uses its own cursor and fetches its result fully. A version's Parquet files are
loaded when a snapshot first names it (at start-up for the CURRENT one) from the files its
manifest names, through Arrow from whichever store holds them, sorted by the view key
so per-account lookups touch few row groups; the newest few versions stay loaded so requests
that began before a publish still finish.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence

import duckdb

from lambda_contracts.batch_files import view_dataset
from lambda_contracts.buckets import floor_sql
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.view_set import ViewSet
from lambda_contracts.views import VIEWS, Key, Measures, keyed
from serving.key_index import KeyedArrays
from serving.row_query import RowQuery
from serving.sorted_view import SortedView

KEEP_LOADED = 3


class BatchStore:
    def __init__(self, layout: Layout, views: ViewSet | None = None) -> None:
        self.layout = layout
        self.views = views if views is not None else ViewSet()
        self.con = duckdb.connect(config={"threads": 1})
        self._lock = threading.Lock()
        self._tables: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._arrays: dict[str, dict[str, KeyedArrays]] = {}  # the built-in views'
        self._sorted: dict[str, dict[str, SortedView]] = {}  # the declared views'
        self._names = itertools.count()

    def current(self) -> BatchPointer | None:
        """Read CURRENT from the file and make sure its version is loaded (readiness)."""
        pointer = self.layout.read_current()
        if pointer is not None:
            self.ensure_loaded(pointer.version)
        return pointer

    def is_loaded(self, version: str) -> bool:
        return version in self._tables

    def holds(self, version: str, view_name: str) -> bool:
        """Whether a loaded version has the view (a declared view's version is in the batch
        versions computed after it was declared, not in older ones)."""
        return view_name in self._tables.get(version, {})

    def ensure_loaded(self, version: str) -> None:
        if version in self._tables:
            return
        with self._lock:
            if version in self._tables:
                return
            tables = {}
            manifest = self.layout.read_manifest(version)
            held = set(manifest.output_partitions) if manifest is not None else set()
            for view in self.views.computed:
                if view not in VIEWS and view.name not in held:
                    continue  # a declared view this version was computed without
                name = f"bv_{next(self._names)}_{view.name}"
                source = f"src_{name}"
                cols = ", ".join(view.key_columns)
                # Streamed from the store (local files or S3) through Arrow into DuckDB.
                self.con.register(source, view_dataset(self.layout, version, view))
                try:
                    self.con.execute(
                        f"CREATE TABLE {name} AS SELECT * FROM {source} ORDER BY {cols}"
                    )
                finally:
                    self.con.unregister(source)
                tables[view.name] = name
            self._arrays[version] = {
                view.name: KeyedArrays.load(self.con, tables[view.name], view) for view in VIEWS
            }
            self._sorted[version] = {
                view.name: SortedView.load(self.con, tables[view.name], view)
                for view in self.views.computed
                if view not in VIEWS and view.name in tables
            }
            self._tables[version] = tables
            while len(self._tables) > KEEP_LOADED:
                gone, old = self._tables.popitem(last=False)
                self._arrays.pop(gone, None)
                self._sorted.pop(gone, None)
                for table in old.values():
                    self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def rows(self, version: str, q: RowQuery) -> list[tuple[Key, Measures]]:
        """The rows ``q`` asks for, from ``version``.

        ``q.window_ms``: ``window_start`` grouped by windows of this size (floored; starts are
        never negative), so an hour or day series comes out already rolled up.

        One key's rows (every dimension filtered, grouped by nothing or by window_start) come
        from the version's :class:`KeyedArrays`; a declared view's rows filtered by a prefix of
        its dimensions from its :class:`SortedView`; other shapes (e.g. top accounts) from SQL.
        """
        view, filters = q.view, q.filter_map
        arrays = self._arrays[version].get(view.name)  # the built-in views'
        if (
            arrays is not None
            and set(filters) == set(view.dimensions)
            and q.group_by in ((), ("window_start",))
        ):
            key = tuple(filters[d] for d in view.dimensions)
            return arrays.rows(key, q.start_ms, q.end_ms, bool(q.group_by), q.window_ms)
        held = self._sorted[version].get(view.name)
        if held is not None and (rows := held.rows(q)) is not None:
            return rows
        return self.sql_rows(version, q)

    def sql_rows(self, version: str, q: RowQuery) -> list[tuple[Key, Measures]]:
        """:meth:`rows` through DuckDB SQL, whatever the shape."""
        view, group_by, window_ms = q.view, q.group_by, q.window_ms
        where, params = _where(q)
        columns = [
            floor_sql("window_start", window_ms) if c == "window_start" and window_ms else c
            for c in group_by
        ]
        select = [*columns, *view.rollup_expressions()]
        sql = f"SELECT {', '.join(select)} FROM {self._tables[version][view.name]} WHERE {where}"
        if group_by:
            sql += f" GROUP BY {', '.join(columns)}"
        return keyed(self._fetch(sql, params), len(group_by))

    def top_rows(
        self, version: str, q: RowQuery, measure: str, limit: int, keys: Sequence[str]
    ) -> list[tuple[Key, Measures]]:
        """Rows of ``q`` (grouped by one dimension) for the ``limit`` keys that rank first by
        ``measure`` (largest first, ties by key), and for each of ``keys``.

        What an exact top-N over batch + speed needs without moving every key out of DuckDB:
        a key the speed side does not hold keeps its batch value, so it can rank among the
        first N only if it ranks among the first N + len(keys) here; ``keys`` (the speed
        side's) are fetched whatever their rank, to be added to."""
        view, (column,) = q.view, q.group_by
        assert column in view.dimensions and measure in {m.name for m in view.measures}
        where, params = _where(q)
        per_key = (
            f"SELECT {column}, {', '.join(view.rollup_expressions())} "
            f"FROM {self._tables[version][view.name]} WHERE {where} GROUP BY {column}"
        )
        sql = (
            f"WITH per_key AS ({per_key}) "
            f"(SELECT * FROM per_key ORDER BY {measure} DESC, {column} LIMIT ?) UNION "
            f"(SELECT * FROM per_key WHERE {column} IN (SELECT unnest(?::VARCHAR[])))"
        )
        return keyed(self._fetch(sql, [*params, limit, list(keys)]), 1)

    def _fetch(self, sql: str, params: list[object]) -> list[tuple[object, ...]]:
        cursor = self.con.cursor()
        try:
            return cursor.execute(sql, params).fetchall()
        finally:
            cursor.close()


def _where(q: RowQuery) -> tuple[str, list[object]]:
    """``q``'s range and equality filters as a WHERE clause and its parameters."""
    where = ["window_start >= ?", "window_start < ?"]
    params: list[object] = [q.start_ms, q.end_ms]
    for column, value in q.filters:
        assert column in q.view.dimensions
        where.append(f"{column} = ?")
        params.append(value)
    return " AND ".join(where), params
