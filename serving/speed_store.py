"""Speed rows through SQLAlchemy: only ingest buckets at or above the batch horizon."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from sqlalchemy import Engine, Select, bindparam, literal_column, select, text

from lambda_contracts.store_schema import batch_runs, partition_state, view_tables
from lambda_contracts.views import Key, Measures, View, keyed
from serving.row_query import RowQuery


class SpeedReader:
    def __init__(self, engine: Engine, topic: str) -> None:
        self.engine = engine
        self.topic = topic
        # One statement per query shape, with bound parameters: built once, so each request
        # only binds values and hits SQLAlchemy's compiled cache.
        self._statements: dict[Hashable, Select] = {}

    def _statement(self, view: View, group_by: tuple[str, ...], filters: tuple[str, ...]) -> Select:
        shape = (view.name, group_by, filters)
        stmt = self._statements.get(shape)
        if stmt is None:
            table = view_tables[view.name]
            stmt = select(
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
            self._statements[shape] = stmt
        return stmt

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def rows(self, q: RowQuery, horizon_ms: int) -> list[tuple[Key, Measures]]:
        """Speed rows of ``q`` with ingest bucket >= horizon, per minute window (the query
        service rolls them up to ``q.window_ms``)."""
        stmt = self._statement(q.view, q.group_by, tuple(c for c, _ in q.filters))
        params: dict[str, Any] = {
            "horizon_ms": horizon_ms,
            "start_ms": q.start_ms,
            "end_ms": q.end_ms,
        }
        params.update((f"filter_{c}", v) for c, v in q.filters)
        with self.engine.connect() as conn:
            fetched = conn.execute(stmt, params).all()
        return keyed(fetched, len(q.group_by))

    def partitions(self) -> list[dict[str, Any]]:
        """Each partition's stored offset, counters and newest counted Kafka timestamp."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_state).where(partition_state.c.topic == self.topic)
            ).mappings()
            return [dict(r) for r in rows]

    def last_run(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(batch_runs).order_by(batch_runs.c.published_at_ms.desc()).limit(1)
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None
