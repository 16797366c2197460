"""The speed store: one database transaction per poll batch, fenced by the stored offsets.

Aggregate deltas, new dedup entries and each partition's next offset are committed together,
so the store's offsets always describe exactly what its aggregates contain: after any crash the
consumer seeks to them and neither loses nor double-counts an event. The offset update is
conditional on the offset this process last read (optimistic fencing): a process that lost its
partitions in a rebalance but still runs (a zombie) fails its commit instead of counting twice.

Several processes share the store, and one of their transactions writes at a time:
- a transaction's first statement takes the store's write lock: on SQLite it moves the
  offsets (a write takes the database's lock), on PostgreSQL it locks ``speed_dedup`` in SHARE
  ROW EXCLUSIVE mode (self-exclusive; readers of the views are not blocked). So duplicates can
  be decided by reading the dedup table and then writing it: no other process's claim comes
  in between, and exactly one process counts a TransactionID that two of them see;
- everything per row runs inside the database: the poll batch's rows are loaded into a
  temporary table, the dedup rule (``lambda_contracts.dedup.is_new_event``) and each view's
  ``batch_sql`` are SQL over it. The Python work per event is flattening its row into the
  load's parameters; the speed layer runs the transaction in a process of its own, beside the
  next poll batch's decoding (``speed_layer.store_process``, ``speed_layer.committer``);
- dedup state is evicted by record time (the Kafka timestamps the store has applied), never by
  the wall clock (:meth:`SpeedStore.expire_dedup`);
- a transaction that still fails transiently (deadlock with another writer such as the batch
  publish's expiry, serialization failure, lost connection, SQLite busy) is retried whole with
  backoff (:func:`retry_transient`).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from lambda_contracts.buckets import floor_to
from lambda_contracts.db import make_engine
from lambda_contracts.dedup import LOG_ORDER, is_new_event, remembered_from
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import dedup, partition_halts, partition_state, view_tables
from lambda_contracts.views import VIEWS, View
from speed_layer.event_block import EventBlock

T = TypeVar("T")

# SQLSTATEs after which re-running the whole transaction can succeed: serialization failure,
# deadlock, connection exceptions (class 08) and server shutdown/restart (57P01-57P03).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})


class FencedError(RuntimeError):
    """Another consumer advanced a partition first: this process no longer owns it."""


def is_transient(exc: BaseException) -> bool:
    """Whether re-running the failed transaction may succeed (never for a fenced commit)."""
    if isinstance(exc, FencedError):
        return False
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if sqlstate:
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return "locked" in message or "busy" in message
    # A psycopg OperationalError without SQLSTATE: the server or the network went away.
    return isinstance(exc, psycopg.OperationalError)


def retry_transient(
    action: Callable[[], T],
    attempts: int = 6,
    base_delay_s: float = 0.05,
    max_delay_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action`` (a whole transaction); re-run it after a transient database error.

    Backoff is exponential with full jitter, so two processes that deadlocked do not collide
    again in lockstep. Other errors, and the last transient one, propagate.
    """
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            sleep(random.uniform(0, min(max_delay_s, base_delay_s * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class PartitionBatch:
    """One partition's share of a poll batch."""

    partition: int
    expected_offset: int | None  # the stored next offset this batch starts from (None: none)
    next_offset: int  # offset after the last record consumed
    rows: EventBlock = field(default_factory=EventBlock)  # the valid records, in log order
    rejected: int = 0
    max_kafka_ts: int = 0


@dataclass(frozen=True)
class AppliedBatch:
    events: int
    duplicates: int
    rejected: int


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


class _Statements:
    """The store's hot statements as SQL for the driver, rendered once per dialect from the
    same declarations every layer uses: the tables, the views' ``batch_sql`` and measure
    merges, the contracts' dedup predicate and ingest-bucket arithmetic."""

    def __init__(self, bucket_ms: int, dedup_horizon_ms: int) -> None:
        self.bucket_ms = bucket_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self._memo: dict[str, _Rendered] = {}
        self._loads: dict[tuple[str, int], str] = {}

    def of(self, dialect: Dialect) -> _Rendered:
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

    def _render(self, dialect: Dialect) -> _Rendered:
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
        return _Rendered(
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
class _Rendered:
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


def _later_copies(blocks: list[EventBlock]) -> list[tuple[int, int, int]]:
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


def _insert(conn: Connection, table: Table):  # type: ignore[no-untyped-def]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"speed store does not support {dialect}")


class SpeedStore:
    def __init__(self, engine: Engine, topic: str, bucket_ms: int, dedup_horizon_ms: int) -> None:
        self.engine = engine
        self.topic = topic
        self.bucket_ms = bucket_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self._statements = _Statements(bucket_ms, dedup_horizon_ms)

    @classmethod
    def from_settings(cls, settings: Settings) -> SpeedStore:
        """The store of ``settings``' topic, at ``speed_store_url``."""
        assert settings.speed_store_url is not None  # Settings fills it in
        return cls(
            make_engine(settings.speed_store_url),
            settings.topic,
            settings.bucket_ms,
            settings.dedup_horizon_ms,
        )

    def load_offsets(self) -> dict[int, int]:
        """Each partition's next offset whose effect is not in the store yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_state.c.kafka_partition, partition_state.c.next_offset).where(
                    partition_state.c.topic == self.topic
                )
            )
            return {p: o for p, o in rows}

    def load_halts(self) -> dict[int, str]:
        """The partitions halted by any process of the group, with the reason."""
        halts = partition_halts.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(halts.kafka_partition, halts.reason).where(halts.topic == self.topic)
            )
            return {p: reason for p, reason in rows}

    def record_halt(self, partition: int, reason: str) -> None:
        """Remember a halt durably (the first reason stays): whichever process takes the
        partition next keeps it paused until an operator resets its offsets."""

        def record() -> None:
            with self.engine.begin() as conn:
                stmt = _insert(conn, partition_halts).values(
                    topic=self.topic,
                    kafka_partition=partition,
                    reason=reason,
                    halted_at_ms=int(time.time() * 1000),
                )
                conn.execute(stmt.on_conflict_do_nothing())

        retry_transient(record)

    def reset_offsets(self, targets: dict[int, int]) -> dict[int, int | None]:
        """Set each partition's next offset (inserting a missing row) and lift its halt, in
        one transaction; return the previous offsets (None where there was none).

        The counters stay; the fencing of running processes is no protection here (their
        expected offsets would simply stop matching), which is why the command refuses to run
        while the consumer group has members.
        """
        return retry_transient(lambda: self._reset_once(targets))

    def _reset_once(self, targets: dict[int, int]) -> dict[int, int | None]:
        state, halts = partition_state.c, partition_halts.c
        now_ms = int(time.time() * 1000)
        with self.engine.begin() as conn:
            old = dict(
                conn.execute(
                    select(state.kafka_partition, state.next_offset).where(
                        state.topic == self.topic, state.kafka_partition.in_(sorted(targets))
                    )
                ).all()
            )
            for partition, offset in sorted(targets.items()):
                if partition in old:
                    conn.execute(
                        update(partition_state)
                        .where(state.topic == self.topic, state.kafka_partition == partition)
                        .values(next_offset=offset, updated_at_ms=now_ms)
                    )
                else:
                    conn.execute(
                        _insert(conn, partition_state).values(
                            topic=self.topic,
                            kafka_partition=partition,
                            next_offset=offset,
                            events=0,
                            duplicates=0,
                            rejected=0,
                            max_kafka_ts=0,
                            updated_at_ms=now_ms,
                        )
                    )
            conn.execute(
                delete(partition_halts).where(
                    halts.topic == self.topic, halts.kafka_partition.in_(sorted(targets))
                )
            )
        return {p: old.get(p) for p in sorted(targets)}

    def apply(self, batches: Iterable[PartitionBatch]) -> AppliedBatch:
        """Commit the batches' effect atomically; raise FencedError if a partition moved.

        A transient database error re-runs the whole transaction (nothing of a failed attempt
        was committed); a FencedError is final.
        """
        batches = sorted(
            (b for b in batches if b.next_offset != b.expected_offset), key=lambda b: b.partition
        )
        if not batches:
            return AppliedBatch(0, 0, 0)
        return retry_transient(lambda: self._apply_once(batches))

    def _apply_once(self, batches: list[PartitionBatch]) -> AppliedBatch:
        sql = self._statements.of(self.engine.dialect)
        with self.engine.begin() as conn:
            if sql.lock is not None:
                # PostgreSQL: one speed transaction at a time decides duplicates (the lock is
                # self-exclusive; readers of the views are not blocked).
                conn.exec_driver_sql(sql.lock)
            # First a write: on SQLite it takes the database's write lock, so no other
            # process commits between the dedup reads below and this transaction's writes.
            for batch in batches:
                self._advance(conn, batch)
            blocks = [b.rows for b in batches if b.rows]
            duplicates = self._apply_rows(conn, sql, blocks) if blocks else Counter()
            for batch in batches:
                if batch.rows:
                    repeated = duplicates[batch.partition]
                    self._count(conn, batch.partition, len(batch.rows) - repeated, repeated)
        rows, repeated = sum(map(len, blocks)), duplicates.total()
        return AppliedBatch(rows - repeated, repeated, sum(b.rejected for b in batches))

    def _apply_rows(
        self, conn: Connection, sql: _Rendered, blocks: list[EventBlock]
    ) -> Counter[int]:
        """Load the rows, decide and claim their ids, merge the views; return the duplicates
        per partition.

        ``speed_dedup`` holds, per TransactionID, the Kafka timestamp of its last *kept* copy.
        A copy is kept when no stored copy makes it a duplicate by the contracts' rule
        (:func:`~lambda_contracts.dedup.is_new_event`); the kept copies' timestamps are then
        stored, so the rule's chain holds (compare with the last kept copy). The copies of one
        id within the batch are judged in waves, in log order, each against the store as the
        previous wave left it. The decision reads before it writes, which is safe because the
        transaction holds the store's write lock (SQLite) or the dedup table's lock (PostgreSQL).
        Duplicates are deleted from the batch table as they are found (rarely any: a read-only
        pass over the batch, not a flag written on every row), so the views aggregate the
        table as it is left.
        """
        conn.exec_driver_sql(sql.create)
        # A batch's rows stay until the next transaction clears them (PostgreSQL drops them
        # at commit): one statement less per batch.
        conn.exec_driver_sql(sql.clear)
        for block in blocks:
            for start in range(0, len(block), ROWS_PER_LOAD):
                stop = min(start + ROWS_PER_LOAD, len(block))
                params = block.flat(BATCH_COLUMNS, start, stop)
                conn.exec_driver_sql(self._statements.load(conn.dialect, stop - start), params)
        later = _later_copies(blocks)
        if later:
            conn.exec_driver_sql(sql.rank, later)
        waves = max((wave for wave, _, _ in later), default=0)
        duplicates: Counter[int] = Counter()
        for wave in range(waves + 1):
            duplicates.update(p for (p,) in conn.exec_driver_sql(sql.drop_duplicates, (wave,)))
            conn.exec_driver_sql(sql.claim, (wave,))
        for upsert in sql.upserts:
            conn.exec_driver_sql(upsert)
        return duplicates

    def _advance(self, conn: Connection, batch: PartitionBatch) -> None:
        """Move the partition's stored offset, only from where this process last read it."""
        state = partition_state.c
        now_ms = int(time.time() * 1000)
        if batch.expected_offset is None:
            stmt = _insert(conn, partition_state).values(
                topic=self.topic,
                kafka_partition=batch.partition,
                next_offset=batch.next_offset,
                events=0,
                duplicates=0,
                rejected=batch.rejected,
                max_kafka_ts=batch.max_kafka_ts,
                updated_at_ms=now_ms,
            )
            stmt = stmt.on_conflict_do_nothing().returning(state.kafka_partition)
            moved = conn.execute(stmt).first() is not None
        else:
            moved = (
                conn.execute(
                    update(partition_state)
                    .where(
                        and_(
                            state.topic == self.topic,
                            state.kafka_partition == batch.partition,
                            state.next_offset == batch.expected_offset,
                        )
                    )
                    .values(
                        next_offset=batch.next_offset,
                        rejected=state.rejected + batch.rejected,
                        max_kafka_ts=batch.max_kafka_ts,
                        updated_at_ms=now_ms,
                    )
                    .returning(state.kafka_partition)
                ).first()
                is not None
            )
        if not moved:
            raise FencedError(
                f"partition {batch.partition} moved past offset {batch.expected_offset}"
            )

    def _count(self, conn: Connection, partition: int, kept: int, duplicates: int) -> None:
        """Add a partition's counted events and duplicates (its offset already moved)."""
        state = partition_state.c
        conn.execute(
            update(partition_state)
            .where(state.topic == self.topic, state.kafka_partition == partition)
            .values(events=state.events + kept, duplicates=state.duplicates + duplicates)
        )

    def record_time(self) -> int | None:
        """The store's record-time watermark: the lowest, over this topic's partitions, of the
        newest Kafka timestamp applied (None before anything was applied).

        Every record still to be applied has a timestamp at least this: the topic is
        LogAppendTime, so a partition's timestamps never go back, and a partition the store
        has not applied yet holds no dedup entries of its own. A partition that fell idle
        holds the watermark back — more state kept, never a duplicate missed.
        """
        with self.engine.connect() as conn:
            return conn.execute(self._record_time_query()).scalar()

    def _record_time_query(self):  # type: ignore[no-untyped-def]
        state = partition_state.c
        return select(func.min(state.max_kafka_ts)).where(state.topic == self.topic)

    def expire_dedup(self) -> int:
        """Forget the TransactionIDs no record still to come can duplicate; return how many.

        The cut is :func:`remembered_from` at the store's record-time watermark
        (:meth:`record_time`), never the wall clock: a consumer catching up on a backlog of
        days-old records keeps the ids within the horizon of the records it is applying. The
        watermark is a subquery of the delete: one statement, no window between read and cut.
        """

        def expire() -> int:
            with self.engine.begin() as conn:
                watermark = self._record_time_query().scalar_subquery()
                cut = remembered_from(watermark, self.dedup_horizon_ms)
                return conn.execute(delete(dedup).where(dedup.c.ingest_ts < cut)).rowcount

        return retry_transient(expire)
