"""The speed store's SQL: a poll batch's statements rendered once per dialect for the driver.

The rows go into a temporary table, and the dedup decision, the claim of the kept ids and each
view's merge are statements over it, rendered from the declarations every layer shares: the
tables, the views' ``batch_sql`` and measure merges, the contracts' dedup predicate and
ingest-bucket arithmetic. :class:`speed_layer.store.SpeedStore` runs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from lambda_contracts.buckets import floor_to
from lambda_contracts.dedup import LOG_ORDER, is_new_event
from lambda_contracts.store_schema import ViewTables, dedup
from lambda_contracts.views import VIEWS, View
from speed_layer.event_block import EventBlock

# The poll batch's rows go into a temporary table (multi-row ``VALUES``, a few thousand rows
# per statement), and every per-row step after that — the dedup decision and claim, each
# view's aggregation — runs inside the database engine: the Python work per event is
# flattening its row into the parameters.
# Named with a digest of its columns: a session's temporary table outlives its transaction, and
# a pooled connection may hold the table of another set of views.
BATCH_TABLE = "speed_batch"
# Parameters per statement: below SQLite's 32,766 and PostgreSQL's 65,535.
MAX_PARAMETERS = 30_000


def batch_columns(views: Sequence[View]) -> tuple[str, ...]:
    """The columns a poll batch's rows carry into the database: the id, the log position, and
    the event columns the views read (their dimensions, event time, measure sources)."""
    inputs = dict.fromkeys(
        c
        for view in views
        for c in (*view.dimensions, "created_time", *(m.source for m in view.measures))
    )
    inputs.update(dict.fromkeys(("amount_cents",)))  # amount filters read it, with no measure
    return ("transaction_id", *LOG_ORDER, *inputs)


class Statements:
    """The store's hot statements as SQL for the driver, rendered once per dialect from the
    same declarations every layer uses: the tables, the views' ``batch_sql`` and measure
    merges, the contracts' dedup predicate and ingest-bucket arithmetic."""

    def __init__(
        self,
        bucket_ms: int,
        dedup_horizon_ms: int,
        views: Sequence[View] = VIEWS,
        tables: ViewTables | None = None,
    ) -> None:
        self.bucket_ms = bucket_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self.views = tuple(views)
        self.tables = tables if tables is not None else ViewTables(self.views)
        self.columns = batch_columns(self.views)
        self.rows_per_load = MAX_PARAMETERS // len(self.columns)
        digest = hashlib.sha256(",".join(self.columns).encode()).hexdigest()[:8]
        self.batch_table = f"{BATCH_TABLE}_{digest}"
        self._text_columns = frozenset(
            ("transaction_id", *(d for view in self.views for d in view.dimensions))
        )
        self._memo: dict[str, Rendered] = {}
        self._loads: dict[tuple[str, int], str] = {}

    def of(self, dialect: Dialect) -> Rendered:
        if dialect.name not in self._memo:
            self._memo[dialect.name] = self._render(dialect)
        return self._memo[dialect.name]

    def load(self, dialect: Dialect, rows: int) -> str:
        """Insert ``rows`` rows of :attr:`columns` into the batch table. Only the full
        statement (:attr:`rows_per_load` rows) is kept: a batch's last one varies in size."""
        memo = (dialect.name, rows)
        batch = self.batch_table
        if memo in self._loads:
            return self._loads[memo]
        row = f"({', '.join([_placeholder(dialect)] * len(self.columns))})"
        statement = (
            f"INSERT INTO {batch} ({', '.join(self.columns)}) VALUES {', '.join([row] * rows)}"
        )
        if rows == self.rows_per_load:
            self._loads[memo] = statement
        return statement

    def _render(self, dialect: Dialect) -> Rendered:
        name = dialect.name
        if name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"speed store does not support {name}")
        mark = _placeholder(dialect)
        batch = self.batch_table
        column_types = ", ".join(
            f"{c} {'TEXT' if c in self._text_columns else 'BIGINT'}" for c in self.columns
        )
        create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {batch} ({column_types}, "
            "wave BIGINT NOT NULL DEFAULT 0)"
        )
        if name == "postgresql":
            create += " ON COMMIT DELETE ROWS"
        # A later copy of an id within the batch: judged in a later wave.
        position = " AND ".join(f"{c} = {mark}" for c in ("kafka_partition", "kafka_offset"))
        duplicate = _sql(
            ~is_new_event(
                literal_column(f"{dedup.name}.ingest_ts"),
                literal_column(f"{batch}.kafka_ts"),
                self.dedup_horizon_ms,
            ),
            dialect,
        )
        # Unescaped: _upsert escapes the whole statement for the driver.
        bucket = _sql(floor_to(literal_column("kafka_ts"), self.bucket_ms), dialect)
        bucket = bucket if dialect.paramstyle == "qmark" else bucket.replace("%%", "%")
        # The duplicates were deleted from the batch: what is left is counted.
        kept = f"(SELECT *, {bucket} AS ingest_bucket FROM {batch})"
        return Rendered(
            create=create,
            clear=f"DELETE FROM {batch}",
            rank=f"UPDATE {batch} SET wave = {mark} WHERE {position}",
            drop_duplicates=(
                f"DELETE FROM {batch} WHERE wave = {mark} AND EXISTS "
                f"(SELECT 1 FROM {dedup.name} WHERE {dedup.name}.transaction_id = "
                f"{batch}.transaction_id AND {duplicate}) RETURNING kafka_partition"
            ),
            claim=(
                f"INSERT INTO {dedup.name} (transaction_id, ingest_ts) "
                f"SELECT transaction_id, kafka_ts FROM {batch} "
                f"WHERE wave = {mark} ORDER BY transaction_id "
                "ON CONFLICT (transaction_id) DO UPDATE SET ingest_ts = excluded.ingest_ts"
            ),
            upserts=tuple(
                _upsert(view, self.tables[view.name].name, kept, dialect) for view in self.views
            ),
            lock=(
                f"LOCK TABLE {dedup.name} IN SHARE ROW EXCLUSIVE MODE"
                if name == "postgresql"
                else None
            ),
        )


@dataclass(frozen=True)
class Rendered:
    create: str
    clear: str
    rank: str
    drop_duplicates: str
    claim: str
    upserts: tuple[str, ...]
    lock: str | None


def _upsert(view: View, table: str, kept: str, dialect: Dialect) -> str:
    """Merge the aggregates of the ``kept`` rows (the view's own ``batch_sql``, by ingest
    bucket too) into its table with the measures' merge, in key order (a fixed lock order)."""
    carried = ("ingest_bucket",)
    select = view.batch_sql(f"{kept} AS kept_events", carried=carried)
    keys = [*view.key_columns, "ingest_bucket"]
    merge = ", ".join(
        f"{m.name} = " + m.kind.sql_merge(f"{table}.{m.name}", f"excluded.{m.name}", dialect.name)
        for m in view.measures
    )
    columns = [*carried, *view.key_columns, *view.measure_names]
    # PostgreSQL locks rows as it writes them: in key order, like any other writer of the
    # view (the publish's expiry) can expect. SQLite locks the whole database: no sort.
    order = f"ORDER BY {', '.join(keys)} " if dialect.name == "postgresql" else ""
    # "WHERE true": SQLite reads an upsert after a bare SELECT's FROM as a join's ON.
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT * FROM ({select}) AS delta WHERE true {order}"
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {merge}"
    )
    # The window's modulo is a placeholder's escape to psycopg (format paramstyle).
    return statement if dialect.paramstyle == "qmark" else statement.replace("%", "%%")


def later_copies(blocks: list[EventBlock]) -> list[tuple[int, int, int]]:
    """(wave, partition, offset) of every copy of an id after its first in the batch, in log
    order: the second copy is in wave 1, the third in wave 2. Empty when every id is unique
    (nearly always: checked with a set, without a loop per row)."""
    ids = set(chain.from_iterable(b.column("transaction_id") for b in blocks))
    if len(ids) == sum(map(len, blocks)):
        return []
    copies: dict[str, list[tuple[int, ...]]] = {}
    for block in blocks:
        for tid, *position in block.tuples(("transaction_id", *LOG_ORDER)):
            copies.setdefault(tid, []).append(tuple(position))
    where = [LOG_ORDER.index("kafka_partition"), LOG_ORDER.index("kafka_offset")]
    later = []
    for same in copies.values():
        same.sort()  # log order: LOG_ORDER's columns, compared in turn
        later += [(w, p[where[0]], p[where[1]]) for w, p in enumerate(same) if w]
    return later


def _placeholder(dialect: Dialect) -> str:
    """The driver's positional parameter marker (sqlite3: ``?``, psycopg: ``%s``)."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(f"speed store does not support paramstyle {dialect.paramstyle}")


def _sql(expression: Any, dialect: Dialect) -> str:
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def dialect_insert(conn: Connection, table: Table):  # type: ignore[no-untyped-def]
    """The connection's dialect's INSERT into ``table``, which has ``ON CONFLICT`` clauses."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"speed store does not support {dialect}")
