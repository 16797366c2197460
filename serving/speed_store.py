"""Speed rows through SQLAlchemy: only ingest buckets at or above the batch horizon.

Every answer reads speed rows, so their query is on the hot path: SQLAlchemy builds and
compiles each query shape once (for the engine's dialect), and a request runs the compiled SQL
on a pooled DBAPI connection and fetches plain tuples. Executing through a SQLAlchemy
``Connection`` cost ~115 us per request (execution context, result metadata, row objects)
against ~30 us for the statement itself (bench/README.md).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, literal_column, select, text

from lambda_contracts.store_schema import (
    ViewTables,
    batch_runs,
    partition_halts,
    partition_state,
    view_versions,
)
from lambda_contracts.view_set import ViewSet
from lambda_contracts.views import Key, Measures, View, keyed
from serving.row_query import RowQuery


@dataclass(frozen=True)
class Compiled:
    """A query shape's SQL for the engine's dialect, and how its parameters are passed."""

    sql: str
    positions: tuple[str, ...] | None  # parameter names in order (positional paramstyles)

    def args(self, params: dict[str, Any]) -> list[Any] | dict[str, Any]:
        return params if self.positions is None else [params[n] for n in self.positions]


# How old a reading of the declared-view registry may be (:meth:`SpeedReader.view_versions`).
VERSIONS_MAX_AGE_S = 1.0


class SpeedReader:
    def __init__(self, engine: Engine, topic: str, views: ViewSet | None = None) -> None:
        self.engine = engine
        self.topic = topic
        self.tables = ViewTables((views if views is not None else ViewSet()).computed)
        # One compiled statement per query shape, with bound parameters: built once, so each
        # request only binds values.
        self._compiled: dict[Hashable, Compiled] = {}
        self._versions: tuple[float, dict[str, dict[str, Any]]] | None = None  # (read at, rows)

    def _statement(
        self, view: View, group_by: tuple[str, ...], filters: tuple[str, ...]
    ) -> Compiled:
        shape = (view.name, group_by, filters)
        compiled = self._compiled.get(shape)
        if compiled is None:
            table = self.tables[view.name]
            stmt: Select = select(
                *(table.c[c] for c in group_by),
                *(literal_column(expr) for expr in view.rollup_expressions()),
            ).where(
                table.c.ingest_bucket >= bindparam("horizon_ms"),
                table.c.window_start >= bindparam("start_ms"),
                table.c.window_start < bindparam("end_ms"),
                *(table.c[c] == bindparam(f"filter_{c}") for c in filters),
            )
            if group_by:
                stmt = stmt.group_by(*(table.c[c] for c in group_by))
            sql = stmt.compile(dialect=self.engine.dialect)
            positions = tuple(sql.positiontup or ()) if sql.positional else None
            compiled = self._compiled[shape] = Compiled(sql.string, positions)
        return compiled

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def rows(self, q: RowQuery, horizon_ms: int) -> list[tuple[Key, Measures]]:
        """Speed rows of ``q`` with ingest bucket >= horizon, per minute window (the query
        service rolls them up to ``q.window_ms``)."""
        compiled = self._statement(q.view, q.group_by, tuple(c for c, _ in q.filters))
        params: dict[str, Any] = {
            "horizon_ms": horizon_ms,
            "start_ms": q.start_ms,
            "end_ms": q.end_ms,
        }
        params.update((f"filter_{c}", v) for c, v in q.filters)
        conn = self.engine.raw_connection()  # from the pool (pre-pinged where configured)
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(compiled.sql, compiled.args(params))
                fetched = cursor.fetchall()
            finally:
                cursor.close()
        finally:
            conn.close()  # back to the pool, which ends the read transaction (rollback)
        return keyed(fetched, len(q.group_by))

    def partitions(self) -> list[dict[str, Any]]:
        """Each partition's stored offset, counters and newest counted Kafka timestamp."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_state).where(partition_state.c.topic == self.topic)
            ).mappings()
            return [dict(r) for r in rows]

    def halts(self) -> dict[int, dict[str, Any]]:
        """Each halted partition's reason and time (a record it cannot pass)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_halts).where(partition_halts.c.topic == self.topic)
            ).mappings()
            return {r["kafka_partition"]: dict(r) for r in rows}

    def last_run(self) -> dict[str, Any] | None:
        runs = self.runs(1)
        return runs[0] if runs else None

    def runs(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` published batch runs, newest first (a run's row exists from
        before its publish, with ``published_at_ms`` 0 until then)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(batch_runs)
                .where(batch_runs.c.published_at_ms > 0)
                .order_by(batch_runs.c.published_at_ms.desc())
                .limit(limit)
            ).mappings()
            return [dict(r) for r in rows]

    def view_versions(self) -> dict[str, dict[str, Any]]:
        """The declared view versions deployed to the store, by storage name: where each
        starts in every partition, and whether it was retired.

        Read at most once per ``VERSIONS_MAX_AGE_S``: every declared-view answer asks (its
        build state), and the read was a sixth of such an answer's time. The registry
        changes only at a deploy or a retirement, and an answer is exact on a reading that
        old: a version deployed since is building either way (its batch part comes from a
        later run), and a retired one has a successor that serves, so it is not read."""
        now = time.monotonic()
        cached = self._versions
        if cached is not None and now - cached[0] < VERSIONS_MAX_AGE_S:
            return cached[1]
        with self.engine.connect() as conn:
            rows = conn.execute(select(view_versions)).mappings()
            versions = {r["storage_name"]: dict(r) for r in rows}
        self._versions = (now, versions)
        return versions
