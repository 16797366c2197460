"""The speed store: one database transaction per poll batch, fenced by the stored offsets.

Aggregate deltas, new dedup entries and each partition's next offset are committed together,
so the store's offsets always describe exactly what its aggregates contain: after any crash the
consumer seeks to them and neither loses nor double-counts an event. The offset update is
conditional on the offset this process last read (optimistic fencing): a process that lost its
partitions in a rebalance but still runs (a zombie) fails its commit instead of counting twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table, and_, delete, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lambda_contracts.store_schema import dedup, partition_state, view_tables
from lambda_contracts.views import VIEWS_BY_NAME, Key, Measures
from speed_layer.aggregation import Row, fold_rows, split_duplicates

ID_CHUNK = 900  # stays under SQLite's bound-parameter limit on every build


class FencedError(RuntimeError):
    """Another consumer advanced a partition first: this process no longer owns it."""


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

    def load_offsets(self) -> dict[int, int]:
        """Each partition's next offset whose effect is not in the store yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_state.c.kafka_partition, partition_state.c.next_offset).where(
                    partition_state.c.topic == self.topic
                )
            )
            return {p: o for p, o in rows}

    def apply(self, batches: Iterable[PartitionBatch]) -> AppliedBatch:
        """Commit the batches' effect atomically; raise FencedError if a partition moved."""
        batches = [b for b in batches if b.next_offset != b.expected_offset]
        if not batches:
            return AppliedBatch(0, 0, 0)
        with self.engine.begin() as conn:
            seen = self._known_ids(conn, [row for b in batches for row in b.rows])
            kept_all: list[Row] = []
            duplicates_all = 0
            for batch in batches:
                kept, duplicates = split_duplicates(batch.rows, seen)
                self._advance(conn, batch, len(kept), duplicates)
                kept_all += kept
                duplicates_all += duplicates
            self._upsert_views(conn, fold_rows(kept_all, self.bucket_ms))
            self._remember_ids(conn, {r["transaction_id"]: r["kafka_ts"] for r in kept_all})
        rejected = sum(b.rejected for b in batches)
        return AppliedBatch(len(kept_all), duplicates_all, rejected)

    def _known_ids(self, conn: Connection, rows: list[Row]) -> set[str]:
        """TransactionIDs of the batch already seen within the dedup horizon of each row."""
        if not rows:
            return set()
        horizon_of = {r["transaction_id"]: r["kafka_ts"] - self.dedup_horizon_ms for r in rows}
        ids = list(horizon_of)
        known: set[str] = set()
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            found = conn.execute(
                select(dedup.c.transaction_id, dedup.c.ingest_ts).where(
                    dedup.c.transaction_id.in_(chunk)
                )
            )
            known.update(tid for tid, ts in found if ts >= horizon_of[tid])
        return known

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
        dialect = conn.dialect.name
        for view_name, delta in rows.items():
            if not delta:
                continue
            view = VIEWS_BY_NAME[view_name]
            table = view_tables[view_name]
            key_cols = [*view.key_columns, "ingest_bucket"]
            values = [
                dict(zip(key_cols, key, strict=True))
                | dict(zip(view.measure_names, measures, strict=True))
                for key, measures in delta.items()
            ]
            merge = {
                m.name: literal_column(
                    m.kind.sql_merge(f"{table.name}.{m.name}", f"excluded.{m.name}", dialect)
                )
                for m in view.measures
            }
            stmt = _insert(conn, table).on_conflict_do_update(index_elements=key_cols, set_=merge)
            conn.execute(stmt, values)

    def _remember_ids(self, conn: Connection, new_ids: dict[str, int]) -> None:
        if not new_ids:
            return
        stmt = _insert(conn, dedup)
        stmt = stmt.on_conflict_do_update(
            index_elements=["transaction_id"], set_={"ingest_ts": stmt.excluded.ingest_ts}
        )
        conn.execute(stmt, [{"transaction_id": t, "ingest_ts": ts} for t, ts in new_ids.items()])

    def expire_dedup(self, now_ms: int) -> int:
        """Forget TransactionIDs older than the dedup horizon (bounded state)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(dedup).where(dedup.c.ingest_ts < now_ms - self.dedup_horizon_ms)
            )
            return result.rowcount
