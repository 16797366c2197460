"""The speed store: one database transaction per poll batch, fenced by the stored offsets.

Aggregate deltas, new dedup entries and each partition's next offset are committed together,
so the store's offsets always describe exactly what its aggregates contain: after any crash the
consumer seeks to them and neither loses nor double-counts an event. The offset update is
conditional on the offset this process last read (optimistic fencing): a process that lost its
partitions in a rebalance but still runs (a zombie) fails its commit instead of counting twice.

Several processes share the store, so the database, not a read before the write, decides:
- duplicates are decided by the dedup insert itself (``ON CONFLICT ... DO UPDATE WHERE`` the
  new copy is a new event by the contracts' rule, ``lambda_contracts.dedup.is_new_event``,
  ``RETURNING``): the row lock serialises two processes that see one TransactionID, and
  exactly one of them counts it;
- dedup state is evicted by record time (the Kafka timestamps the store has applied), never by
  the wall clock (:meth:`SpeedStore.expire_dedup`);
- every statement touches its rows in a fixed order (dedup ids, then partitions, then view
  keys, each sorted), so two transactions never wait on each other's locks in a cycle;
- a transaction that still fails transiently (deadlock, serialization failure, lost
  connection, SQLite busy) is retried whole with backoff (:func:`retry_transient`).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

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

from lambda_contracts.dedup import is_new_event, remembered_from
from lambda_contracts.store_schema import dedup, partition_halts, partition_state, view_tables
from lambda_contracts.views import VIEWS_BY_NAME, Key, Measures
from speed_layer.aggregation import Row, fold_rows, log_order

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
    rows: list[Row] = field(default_factory=list)  # valid records, in log order
    rejected: int = 0
    max_kafka_ts: int = 0


@dataclass(frozen=True)
class AppliedBatch:
    events: int
    duplicates: int
    rejected: int


# Parameters per statement: below SQLite's 32,766 and PostgreSQL's 65,535.
MAX_PARAMETERS = 30_000


class _Statements:
    """The store's hot statements as raw multi-row ``VALUES`` SQL for the driver (no
    SQLAlchemy per-row work, one statement execution per few thousand rows), rendered from the
    same declarations the Core statements used: the tables, the views' measure merges and the
    contracts' dedup predicate. The fixed parts are rendered once per dialect."""

    def __init__(self, dedup_horizon_ms: int) -> None:
        self.dedup_horizon_ms = dedup_horizon_ms
        self._parts: dict[tuple[str, str], tuple[str, str, str, int]] = {}

    def claim(self, dialect: Dialect, rows: int) -> str:
        """Insert ``rows`` (id, Kafka timestamp) pairs; overwrite a stored id only when the
        new copy is a new event; return the ids written."""
        return self._render(dialect, "claim", rows)

    def upsert(self, dialect: Dialect, view_name: str, rows: int) -> str:
        """Insert ``rows`` view rows (key columns, ingest bucket, measures) or merge their
        measures into the stored rows with the measures' own merge."""
        return self._render(dialect, view_name, rows)

    def rows_per_statement(self, dialect: Dialect, name: str) -> int:
        return self._parts_of(dialect, name)[3]

    def _render(self, dialect: Dialect, name: str, rows: int) -> str:
        head, row, tail, _ = self._parts_of(dialect, name)
        return f"{head} VALUES {', '.join([row] * rows)} {tail}"

    def _parts_of(self, dialect: Dialect, name: str) -> tuple[str, str, str, int]:
        memo = (dialect.name, name)
        if memo not in self._parts:
            head, columns, tail = (
                self._claim_parts(dialect) if name == "claim" else self._upsert_parts(dialect, name)
            )
            row = f"({', '.join([_placeholder(dialect)] * columns)})"
            self._parts[memo] = (head, row, tail, MAX_PARAMETERS // columns)
        return self._parts[memo]

    def _claim_parts(self, dialect: Dialect) -> tuple[str, int, str]:
        new_event = is_new_event(
            literal_column(f"{dedup.name}.ingest_ts"),
            literal_column("excluded.ingest_ts"),
            self.dedup_horizon_ms,
        )
        where = new_event.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        return (
            f"INSERT INTO {dedup.name} (transaction_id, ingest_ts)",
            2,
            "ON CONFLICT (transaction_id) DO UPDATE SET ingest_ts = excluded.ingest_ts "
            f"WHERE {where} RETURNING transaction_id",
        )

    @staticmethod
    def _upsert_parts(dialect: Dialect, view_name: str) -> tuple[str, int, str]:
        view, table = VIEWS_BY_NAME[view_name], view_tables[view_name].name
        keys = [*view.key_columns, "ingest_bucket"]
        columns = [*keys, *view.measure_names]
        merge = ", ".join(
            f"{m.name} = "
            + m.kind.sql_merge(f"{table}.{m.name}", f"excluded.{m.name}", dialect.name)
            for m in view.measures
        )
        return (
            f"INSERT INTO {table} ({', '.join(columns)})",
            len(columns),
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {merge}",
        )


def _placeholder(dialect: Dialect) -> str:
    """The driver's positional parameter marker (sqlite3: ``?``, psycopg: ``%s``)."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(f"speed store does not support paramstyle {dialect.paramstyle}")


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
        self._statements = _Statements(dedup_horizon_ms)

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
        with self.engine.begin() as conn:
            kept = self._keep_new(conn, [row for b in batches for row in b.rows])
            kept_rows = {id(row) for row in kept}
            for batch in batches:
                kept_here = sum(id(row) in kept_rows for row in batch.rows)
                self._advance(conn, batch, kept_here, len(batch.rows) - kept_here)
            self._upsert_views(conn, fold_rows(kept, self.bucket_ms))
        total = sum(len(b.rows) for b in batches)
        rejected = sum(b.rejected for b in batches)
        return AppliedBatch(len(kept), total - len(kept), rejected)

    def _keep_new(self, conn: Connection, rows: list[Row]) -> list[Row]:
        """The rows that count (are no duplicate), as decided by the database.

        ``speed_dedup`` holds, per TransactionID, the Kafka timestamp of its last *kept* copy.
        The insert decides and records in one statement: it inserts the id, or overwrites the
        stored copy when the new one is a new event by the contracts' rule (more than the dedup
        horizon after it), and returns the ids it wrote — those rows count. A duplicate leaves
        the stored timestamp alone, which gives the rule's chain semantics (compare with the
        last kept copy). One statement holds one copy per id, so copies of an id within the
        batch go in successive waves, in log order: the second copy is judged against the
        first if that one was kept.
        """
        heads: dict[str, Row] = {}  # each id's next copy to judge, in log order
        later: dict[str, list[Row]] = {}  # ids with several copies: the rest, latest first
        for row in rows:
            tid = row["transaction_id"]
            if tid in heads:
                later.setdefault(tid, [heads[tid]]).append(row)
            else:
                heads[tid] = row
        for tid, copies in later.items():
            copies.sort(key=log_order, reverse=True)
            heads[tid] = copies.pop()
        kept: list[Row] = []
        while heads:
            ids = sorted(heads)  # a fixed lock order across processes
            step = self._statements.rows_per_statement(conn.dialect, "claim")
            for start in range(0, len(ids), step):
                chunk = ids[start : start + step]
                params = tuple([v for tid in chunk for v in (tid, heads[tid]["kafka_ts"])])
                sql = self._statements.claim(conn.dialect, len(chunk))
                kept += [heads[tid] for tid in conn.exec_driver_sql(sql, params).scalars().all()]
            heads = {tid: copies.pop() for tid, copies in later.items() if copies}
        return kept

    def _advance(self, conn: Connection, batch: PartitionBatch, kept: int, duplicates: int) -> None:
        """Move the partition's stored offset, only from where this process last read it."""
        state = partition_state.c
        now_ms = int(time.time() * 1000)
        if batch.expected_offset is None:
            stmt = _insert(conn, partition_state).values(
                topic=self.topic,
                kafka_partition=batch.partition,
                next_offset=batch.next_offset,
                events=kept,
                duplicates=duplicates,
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
                        events=state.events + kept,
                        duplicates=state.duplicates + duplicates,
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

    def _upsert_views(self, conn: Connection, rows: dict[str, dict[Key, Measures]]) -> None:
        """Merge each view's deltas into its table, rows in key order (a fixed lock order
        across processes), a few thousand rows per statement."""
        for view_name, delta in rows.items():
            if not delta:
                continue
            ordered = sorted(delta.items())
            step = self._statements.rows_per_statement(conn.dialect, view_name)
            for start in range(0, len(ordered), step):
                chunk = ordered[start : start + step]
                params = tuple([v for key, measures in chunk for v in (*key, *measures)])
                sql = self._statements.upsert(conn.dialect, view_name, len(chunk))
                conn.exec_driver_sql(sql, params)

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
