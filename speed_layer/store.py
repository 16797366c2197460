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
  next poll batch's decoding (``speed_layer.store_process``, ``speed_layer.committer``); the
  statements are rendered in ``speed_layer.store_sql``;
- dedup state is evicted by record time (the Kafka timestamps the store has applied), never by
  the wall clock (:meth:`SpeedStore.expire_dedup`);
- a transaction that still fails transiently (deadlock with another writer such as the batch
  publish's expiry, serialization failure, lost connection, SQLite busy) is retried whole with
  backoff (:func:`speed_layer.store_retry.retry_transient`).

The partitions' offsets and halts outside the apply transaction (read on assignment, a halt
recorded, the operator's reset) are ``speed_layer.store_cursors``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, and_, delete, func, select, update

from lambda_contracts.db import make_engine
from lambda_contracts.dedup import remembered_from
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import dedup, partition_state
from lambda_contracts.view_set import ViewSet
from speed_layer.event_block import EventBlock
from speed_layer.store_cursors import PartitionCursors
from speed_layer.store_deploy import Deployed, Serves, check_deployment, deploy
from speed_layer.store_retry import FencedError, retry_transient
from speed_layer.store_sql import Rendered, Statements, dialect_insert, later_copies


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


class SpeedStore:
    """One topic's speed store: the fenced apply transaction, its watermark, dedup expiry."""

    def __init__(
        self,
        engine: Engine,
        topic: str,
        bucket_ms: int,
        dedup_horizon_ms: int,
        views: ViewSet | None = None,
    ) -> None:
        self.engine = engine
        self.topic = topic
        self.bucket_ms = bucket_ms
        self.dedup_horizon_ms = dedup_horizon_ms
        self.views = views if views is not None else ViewSet()
        self._statements = Statements(bucket_ms, dedup_horizon_ms, self.views.computed)
        self.cursors = PartitionCursors(engine, topic)

    @classmethod
    def from_settings(cls, settings: Settings, views: ViewSet | None = None) -> SpeedStore:
        """The store of ``settings``' topic, at ``speed_store_url``, computing ``views`` (by
        default the built-in views only)."""
        assert settings.speed_store_url is not None  # Settings fills it in
        return cls(
            make_engine(settings.speed_store_url),
            settings.topic,
            settings.bucket_ms,
            settings.dedup_horizon_ms,
            views,
        )

    def deploy(self, serves: Serves | None = None) -> Deployed:
        """Make this store's views file the deployment in force, and compute from then on the
        previous versions still answering beside it (:mod:`speed_layer.store_deploy`)."""
        sql = self._statements.of(self.engine.dialect)
        deployed = deploy(self.engine, self.topic, self.views, sql.lock, serves)
        if deployed.views != self.views:
            self.views = deployed.views
            self._statements = Statements(
                self.bucket_ms, self.dedup_horizon_ms, self.views.computed
            )
        return deployed

    def load_offsets(self) -> dict[int, int]:
        """Each partition's next offset whose effect is not in the store yet."""
        return self.cursors.load_offsets()

    def load_halts(self) -> dict[int, str]:
        """The partitions halted by any process of the group, with the reason."""
        return self.cursors.load_halts()

    def record_halt(self, partition: int, reason: str) -> None:
        """Remember a halt durably (:meth:`PartitionCursors.record_halt`)."""
        self.cursors.record_halt(partition, reason)

    def reset_offsets(self, targets: dict[int, int]) -> dict[int, int | None]:
        """Set offsets and lift halts in one transaction; return the previous offsets
        (:meth:`PartitionCursors.reset_offsets`)."""
        return self.cursors.reset_offsets(targets)

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
            # Holding the write lock: no deploy can come between this check and the commit.
            check_deployment(conn, self.topic, self.views.fingerprint)
            blocks = [b.rows for b in batches if b.rows]
            duplicates = self._apply_rows(conn, sql, blocks) if blocks else Counter()
            for batch in batches:
                if batch.rows:
                    repeated = duplicates[batch.partition]
                    self._count(conn, batch.partition, len(batch.rows) - repeated, repeated)
        rows, repeated = sum(map(len, blocks)), duplicates.total()
        return AppliedBatch(rows - repeated, repeated, sum(b.rejected for b in batches))

    def _apply_rows(
        self, conn: Connection, sql: Rendered, blocks: list[EventBlock]
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
            step = self._statements.rows_per_load
            for start in range(0, len(block), step):
                stop = min(start + step, len(block))
                params = block.flat(self._statements.columns, start, stop)
                conn.exec_driver_sql(self._statements.load(conn.dialect, stop - start), params)
        later = later_copies(blocks)
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
            stmt = dialect_insert(conn, partition_state).values(
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
