"""The speed store's SQL: a poll batch's statements rendered once per dialect for the driver.

The rows go into a temporary table, and the dedup decision, the claim of the kept ids and each
view's merge are statements over it, rendered from the declarations every layer shares: the
tables, the views' ``batch_sql`` and measure merges, the contracts' dedup predicate and
ingest-bucket arithmetic. :class:`speed_layer.store.SpeedStore` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from lambda_contracts.buckets import floor_to
from lambda_contracts.dedup import LOG_ORDER, is_new_event
from lambda_contracts.store_schema import dedup, view_tables
from lambda_contracts.views import VIEWS, View
from speed_layer.event_block import EventBlock

# The poll batch's rows go into a temporary table (multi-row ``VALUES``, a few thousand rows
# per statement), and every per-row step after that — the dedup decision and claim, each
# view's aggregation — runs inside the database engine: the Python work per event is
# flattening its row into the parameters.
BATCH_TABLE = "speed_batch"
# The columns a poll batch's rows carry into the database: the id, the log position, and the
# event columns the views read (their dimensions, event time and measure sources).
_VIEW_INPUTS = tuple(
    dict.fromkeys(
        c
        for view in VIEWS
        for c in (*view.dimensions, "created_time", *(m.source for m in view.measures))
    )
)
BATCH_COLUMNS: tuple[str, ...] = ("transaction_id", *LOG_ORDER, *_VIEW_INPUTS)
_TEXT_COLUMNS = frozenset(("transaction_id", *(d for view in VIEWS for d in view.dimensions)))
# Parameters per statement: below SQLite's 32,766 and PostgreSQL's 65,535.
MAX_PARAMETERS = 30_000
ROWS_PER_LOAD = MAX_PARAMETERS // len(BATCH_COLUMNS)


class Statements:
    """The store's hot statements as SQL for the driver, rendered once per dialect from the
    same declarations every layer uses: the tables, the views' ``batch_sql`` and measure
    merges, the contracts' dedup predicate and ingest-bucket arithmetic."""

    def __init__(self, bucket_ms: int, dedup_horizon_ms: int) -> None:
        self.bucket_ms = bucket_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self._memo: dict[str, Rendered] = {}
        self._loads: dict[tuple[str, int], str] = {}

    def of(self, dialect: Dialect) -> Rendered:
        if dialect.name not in self._memo:
            self._memo[dialect.name] = self._render(dialect)
        return self._memo[dialect.name]

    def load(self, dialect: Dialect, rows: int) -> str:
        """Insert ``rows`` rows of :data:`BATCH_COLUMNS` into the batch table. Only the full
        statement (:data:`ROWS_PER_LOAD` rows) is kept: a batch's last one varies in size."""
        memo = (dialect.name, rows)
        if memo in self._loads:
            return self._loads[memo]
        row = f"({', '.join([_placeholder(dialect)] * len(BATCH_COLUMNS))})"
        statement = (
            f"INSERT INTO {BATCH_TABLE} ({', '.join(BATCH_COLUMNS)}) "
            f"VALUES {', '.join([row] * rows)}"
        )
        if rows == ROWS_PER_LOAD:
            self._loads[memo] = statement
        return statement

    def _render(self, dialect: Dialect) -> Rendered:
        name = dialect.name
        if name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"speed store does not support {name}")
        mark = _placeholder(dialect)
        column_types = ", ".join(
            f"{c} {'TEXT' if c in _TEXT_COLUMNS else 'BIGINT'}" for c in BATCH_COLUMNS
        )
        create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} ({column_types}, "
            "wave BIGINT NOT NULL DEFAULT 0)"
        )
        if name == "postgresql":
            create += " ON COMMIT DELETE ROWS"
        # A later copy of an id within the batch: judged in a later wave.
        position = " AND ".join(f"{c} = {mark}" for c in ("kafka_partition", "kafka_offset"))
        duplicate = _sql(
            ~is_new_event(
                literal_column(f"{dedup.name}.ingest_ts"),
                literal_column(f"{BATCH_TABLE}.kafka_ts"),
                self.dedup_horizon_ms,
            ),
            dialect,
        )
        # Unescaped: _upsert escapes the whole statement for the driver.
        bucket = _sql(floor_to(literal_column("kafka_ts"), self.bucket_ms), dialect)
        bucket = bucket if dialect.paramstyle == "qmark" else bucket.replace("%%", "%")
        # The duplicates were deleted from the batch: what is left is counted.
        kept = f"(SELECT *, {bucket} AS ingest_bucket FROM {BATCH_TABLE})"
        return Rendered(
            create=create,
            clear=f"DELETE FROM {BATCH_TABLE}",
            rank=f"UPDATE {BATCH_TABLE} SET wave = {mark} WHERE {position}",
            drop_duplicates=(
                f"DELETE FROM {BATCH_TABLE} WHERE wave = {mark} AND EXISTS "
                f"(SELECT 1 FROM {dedup.name} WHERE {dedup.name}.transaction_id = "
                f"{BATCH_TABLE}.transaction_id AND {duplicate}) RETURNING kafka_partition"
            ),
            claim=(
                f"INSERT INTO {dedup.name} (transaction_id, ingest_ts) "
                f"SELECT transaction_id, kafka_ts FROM {BATCH_TABLE} "
                f"WHERE wave = {mark} ORDER BY transaction_id "
                "ON CONFLICT (transaction_id) DO UPDATE SET ingest_ts = excluded.ingest_ts"
            ),
            upserts=tuple(_upsert(view, kept, dialect) for view in VIEWS),
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


def _upsert(view: View, kept: str, dialect: Dialect) -> str:
    """Merge the aggregates of the ``kept`` rows (the view's own ``batch_sql``, by ingest
    bucket too) into its table with the measures' merge, in key order (a fixed lock order)."""
    table = view_tables[view.name].name
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
