"""Commits the cut poll batches to the speed store, in order, and the durable offsets to Kafka.

A poll batch's store transaction runs in the store process (:mod:`speed_layer.store_process`)
and is waited for on the committer's thread (:mod:`speed_layer.committer`) while the loop
prepares the next poll batches: at most ``MAX_IN_FLIGHT`` are in flight, and a rebalance, a
rewind or a stop waits for them. The cursors move when a batch is submitted, so the next batch
is cut from where it ends; its transaction is fenced by that offset.

A transaction that fails — fenced by another process, or refused for one record's data — has
every partition read again from the store's offsets; a refused batch is then applied in the
loop's thread, record by record if the store refuses it again (:mod:`speed_layer.poison`).

The group's committed offsets (for lag tools, and read back after a restart) never pass what is
durable: per partition the lower of its settled store offset and its durably landed offset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from lambda_contracts.settings import Settings
from speed_layer.committer import Committer
from speed_layer.dlq import DeadLetters
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.partition_guard import PartitionGuard
from speed_layer.poison import apply_record_by_record, is_record_error
from speed_layer.store import AppliedBatch, PartitionBatch, SpeedStore
from speed_layer.store_process import StoreProcess
from speed_layer.store_retry import FencedError

log = structlog.get_logger("speed_layer")


@dataclass(frozen=True)
class PollCut:
    """A poll batch cut for the store: its partition batches, its records by partition (a
    record the store refuses is dead-lettered with its original key and value), and the
    guard's epoch it was cut in."""

    batches: list[PartitionBatch]
    records: dict[int, list[ConsumerRecord]]
    epoch: int


class CommitPipeline:
    """The store transactions of the cut poll batches, in flight beside the loop, accounted
    for in order; and the group commits of the durable offsets."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        guard: PartitionGuard,
        store: SpeedStore,
        dead_letters: DeadLetters,
        landing: LandingWriter,
        metrics: SpeedMetrics,
    ) -> None:
        assert settings.speed_store_url is not None
        self.topic = settings.topic
        self.consumer = consumer
        self.guard = guard
        # This process's own store connection: a refused batch applied record by record.
        self.store = store
        self.dlq = dead_letters
        self.landing = landing
        self.metrics = metrics
        # The loop's transactions run in a process of their own (no GIL shared with the loop),
        # waited for on the committer's thread.
        self.store_process = StoreProcess(
            settings.speed_store_url,
            settings.topic,
            settings.bucket_ms,
            settings.dedup_horizon_ms,
            store.views,
        )
        self.committer = Committer(self.store_process.apply)
        # A batch the store refused is read again and applied in the loop's own thread.
        self._apply_next_now = False

    def start(self) -> None:
        self.store_process.start()

    def close(self) -> None:
        """End the committer and the store process (call with no transaction in flight)."""
        self.committer.close()
        self.store_process.close()

    # --- partitions move only with no transaction in flight ----------------------------
    def take(self, assigned: set[TopicPartition]) -> None:
        """Let every transaction in flight end, then seek the partitions to their cursors."""
        self.settle_all()
        self.guard.take(assigned)

    def release(self, revoked: set[TopicPartition]) -> None:
        """Give partitions up: their transaction in flight ends first, so their next owner
        reads offsets that hold everything this process counted."""
        self.settle_all()
        self.guard.release(revoked)

    def _seek_all_again(self) -> None:
        """Read every partition again from the store's offsets."""
        self.take({TopicPartition(self.topic, p) for p in list(self.guard.stored)})

    # --- the store transactions ---------------------------------------------------------
    def commit(self, cut: PollCut) -> int:
        """Submit the cut's transaction behind those in flight (at most ``MAX_IN_FLIGHT``: the
        oldest is waited for first) or, after a refused batch, apply it in this thread. A cut
        made before the partitions were sought again is dropped: its records are read again.
        Returns the events of the transactions accounted for."""
        if self._apply_next_now:  # after a refused batch, until a batch got through
            events = self.settle_all()
            if cut.batches and cut.epoch == self.guard.epoch:
                self._apply_next_now = False
                events += self._apply_now(cut)
            return events
        events = self.settle() if self.committer.full else 0
        if cut.batches and cut.epoch == self.guard.epoch:
            self._submit(cut.batches)
        return events

    def _apply_now(self, cut: PollCut) -> int:
        """Apply the cut's batches in this thread. A batch the store refuses is applied record
        by record; a fenced one has every partition read again from the store."""
        batches = cut.batches
        started = time.perf_counter()
        try:
            try:
                applied = self.store.apply(batches)
            except Exception as exc:
                if not is_record_error(exc):
                    raise
                log.warning(
                    "store refused the batch; applying it record by record", error=repr(exc)
                )
                applied = apply_record_by_record(
                    self.store, self.dlq, batches, cut.records, self.guard.stored
                )
        except FencedError as exc:
            self._fenced(exc)
            self._seek_all_again()
            return 0
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for batch in batches:
            self.guard.stored[batch.partition] = batch.next_offset
        self._count(applied)
        return applied.events

    def _submit(self, batches: list[PartitionBatch]) -> None:
        """Start the batches' transaction in the background. The cursors move at once, so the
        next poll batch is cut from where this one ends: its transaction is fenced by that
        offset, and fails if this one does (:meth:`settle` then resynchronises)."""
        self.committer.submit(batches)
        for batch in batches:
            self.guard.stored[batch.partition] = batch.next_offset

    def settle(self) -> int:
        """Wait for the oldest transaction in flight and account for it; returns the events
        it counted (0 if none was in flight or it failed)."""
        pending = self.committer.take()
        if pending is None:
            return 0
        try:
            applied = pending.future.result()
        except Exception as exc:
            if not isinstance(exc, FencedError) and not is_record_error(exc):
                raise
            return self._resync_after(exc)
        self.metrics.batch_seconds.observe(time.perf_counter() - pending.submitted_at)
        self._count(applied)
        return applied.events

    def settle_all(self) -> int:
        """Wait for every transaction in flight and account for them; returns their events."""
        events = 0
        while self.committer.in_flight:
            events += self.settle()
        return events

    def _resync_after(self, failure: Exception) -> int:
        """A transaction in flight was fenced, or refused by the store for one record's data.

        The transactions submitted after it start where it would have ended, so on its
        partitions they fail too (fenced); on others they may commit, consistently. Let them
        end, then read every partition again from the store's offsets. A refused batch's
        records come back first in the next poll batch, which is applied in this thread,
        record by record if the store refuses it again (:meth:`_apply_now`).
        """
        if isinstance(failure, FencedError):
            self._fenced(failure)
        else:
            log.warning("store refused a batch; reading it again", error=repr(failure))
            self._apply_next_now = True
        events = 0
        while (pending := self.committer.take()) is not None:
            try:
                applied = pending.future.result()
            except Exception as later:
                if not isinstance(later, FencedError) and not is_record_error(later):
                    raise
                continue  # read again with the rest
            self._count(applied)
            events += applied.events
        self._seek_all_again()
        return events

    def _fenced(self, exc: FencedError) -> None:
        self.metrics.fenced.inc()
        log.warning("fenced", error=str(exc))

    def _count(self, applied: AppliedBatch) -> None:
        self.metrics.events.inc(applied.events)
        self.metrics.duplicates.inc(applied.duplicates)
        self.metrics.rejected.inc(applied.rejected)

    # --- the group's committed offsets --------------------------------------------------
    def durable_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per owned partition, the offset below which every record is counted in the store
        (its transactions ended) and durably landed — past the markers that follow, when that
        is every record read. The group's committed offset is read back as how far a
        partition was read (:meth:`PartitionGuard.verify_log_starts`), so it must never pass
        what is durable: the consumer's position would, by the records polled, in
        transactions in flight or landing buffers, that a crash loses."""
        guard = self.guard
        own = [p for p in guard.owned() if p not in guard.halted and p not in guard.unverified]
        positions = guard.positions(own)
        unsettled = self.committer.unsettled_from()
        offsets = {}
        for partition in own:
            stored = unsettled.get(partition, guard.stored.get(partition))
            landed = self.landing.durable_next(partition)
            if stored is None or landed is None:
                continue
            through = guard.past_markers(partition, min(stored, landed), positions)
            if through is not None:
                tp = TopicPartition(self.topic, partition)
                offsets[tp] = OffsetAndMetadata(through, "", -1)
        return offsets

    def commit_durable(self, timeout_ms: int | None = None) -> None:
        """Commit :meth:`durable_offsets` to the group: asynchronously (for lag tools and the
        log-start check after a restart; the store holds the truth), or, given a time-out,
        waiting for the answer (at a stop)."""
        offsets = self.durable_offsets()
        if not offsets:
            return
        if timeout_ms is None:
            self.consumer.commit_async(offsets=offsets)
        else:
            self.consumer.commit(offsets=offsets, timeout_ms=timeout_ms)
