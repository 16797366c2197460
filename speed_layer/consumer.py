"""The speed layer's poll loop: validate, land, aggregate, commit — per poll batch.

One instance per process; several processes in the consumer group ``speed-layer`` share the
partitions. Per poll batch: invalid records go to the DLQ (flushed first), valid ones to the
landing buffer and — if not yet counted — to one store transaction that also moves the offsets.
On (re)assignment each partition is read again from the lower of two cursors: the store's
offset (what the aggregates hold) and the landing progress (what is durably landed); records
below a cursor are not applied to that sink again. Kafka's committed offsets are updated too,
for lag tools, but the store's offsets are the truth.

The loop never skips silently: a partition whose log contradicts its cursors is *halted*
(paused, recorded in the store, reported on ``/readyz``) instead of read. That is the case when
a record below the offset the consumer was sought to comes back (the broker reset the position:
topic recreated or truncated), when a stored cursor lies beyond the log's end, or when the log
starts above the stored offset (retention removed records never counted). ``lambda-speed
reset-offsets`` resolves it. One case stays invisible to a client: a topic recreated and
refilled past the stored offset before the process reads it again (the offsets then exist).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from dataclasses import dataclass
from operator import attrgetter

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from lambda_contracts.layout import Layout, PartitionProgress, landing_watermark
from lambda_contracts.settings import Settings
from lambda_contracts.storage import StorageError
from speed_layer.batcher import Batcher
from speed_layer.broker_clock import BrokerClock
from speed_layer.committer import Committer
from speed_layer.dlq import DeadLetters
from speed_layer.health import Health
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.poison import apply_record_by_record, is_record_error
from speed_layer.store import AppliedBatch, FencedError, PartitionBatch, SpeedStore
from speed_layer.store_process import StoreProcess

log = structlog.get_logger("speed_layer")

Polled = dict[int, list[ConsumerRecord]]  # a poll batch's records by partition
_TIMESTAMP = attrgetter("timestamp")

HOUSEKEEPING_S = 1.0
DEDUP_EXPIRY_S = 60.0
POLL_MS = 100
# The landing zone cannot be written: a local disk full or failing, or S3 refusing or down.
LANDING_ERRORS = (OSError, StorageError)
SHUTDOWN_TIMEOUT_MS = 5000  # a stop must not wait on a broker that is gone
LOOKUP_TIMEOUT_MS = 10_000  # a committed-offset look-up that waits longer is retried later
RETRY_BASE_S, RETRY_MAX_S = 0.5, 10.0
RESET_COMMAND = (
    "stop the speed processes (make down), then: lambda-speed reset-offsets "
    "--partition {partition} --to-beginning|--to-end|--to OFFSET"
)


@dataclass(frozen=True)
class PollCut:
    """A poll batch cut for the store: its partition batches, its records by partition (a
    record the store refuses is dead-lettered with its original key and value), and the
    epoch of the cursors it was cut from."""

    batches: list[PartitionBatch]
    records: Polled
    epoch: int


def retry_delay(failures: int) -> float:
    """Exponential backoff with jitter for the ``failures``-th consecutive Kafka error."""
    exponent = min(max(0, failures - 1), 16)
    return min(RETRY_MAX_S, RETRY_BASE_S * 2**exponent) * random.uniform(0.8, 1.2)


class _Rebalance(ConsumerRebalanceListener):
    """Runs inside ``consumer.poll()`` on the polling thread (kafka-python 2.x).

    kafka-python only logs an exception raised here, so a failed ``take`` (the store or the
    landing progress unreadable for a moment) would leave a partition assigned but never
    sought: the layer is told to resynchronise from the loop instead.
    """

    def __init__(self, layer: SpeedLayer) -> None:
        self.layer = layer

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            self.layer.release(revoked)
        except Exception:
            log.exception("releasing partitions failed; resynchronising")
            self.layer.resync_needed = True

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self.layer.take(assigned)
        except Exception:
            log.exception("taking partitions failed; resynchronising")
            self.layer.resync_needed = True


class SpeedLayer:
    """Consumes the transactions topic into the speed store and the landing zone."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        dead_letters: DeadLetters,
        metrics: SpeedMetrics,
        health: Health | None = None,
        log_ends: KafkaConsumer | None = None,
    ) -> None:
        assert settings.speed_store_url is not None
        self.settings = settings
        self.consumer = consumer
        # A read_uncommitted client for the high watermarks: the consumer's own end offsets
        # are the LSO, which an open transaction holds back (None: the consumer's, in tests).
        self.log_ends = log_ends
        self.dlq = dead_letters
        self.metrics = metrics
        self.health = health or Health(settings.speed_unhealthy_after_s)
        self.layout = Layout.of(settings)
        self.store = SpeedStore.from_settings(settings)
        self.landing = LandingWriter(
            self.layout,
            settings.bucket_ms,
            settings.landing_flush_ms,
            settings.landing_flush_records,
            settings.idle_seal_grace_ms or 0,
        )
        self.batcher = Batcher(self.landing, dead_letters, metrics)
        self.stored: dict[int, int | None] = {}  # partition -> store's next offset
        # partition -> lowest offset the consumer may return: where take() sought it, then
        # past the last record read. A lower one means the broker reset the position.
        self.sought: dict[int, int] = {}
        self.halted: dict[int, str] = {}  # partition -> reason; paused until a reset
        # Partitions paused by take() until their log start is checked outside the callback.
        self.unverified: set[int] = set()
        self._verify_after = 0.0
        # partition -> an offset below which every record had been read and applied when the
        # log start was last checked (transaction markers and aborted records included): the
        # stored offset or the group's committed position at take, the consumer's position
        # at each housekeeping after. A log start above it means records were never read.
        self.read_through: dict[int, int] = {}
        self.resync_needed = False
        self.broker_clock = BrokerClock()
        # The loop's transactions run in a process of their own (no GIL shared with the loop),
        # waited for on the committer's thread; this process's own store connection serves
        # the rest (offsets, halts, a refused batch applied record by record).
        self.store_process = StoreProcess(
            settings.speed_store_url,
            settings.topic,
            settings.bucket_ms,
            settings.dedup_horizon_ms,
        )
        self.committer = Committer(self.store_process.apply)
        # Moves each time the partitions are sought again: a poll batch prepared before that
        # is not submitted (its records will be read again).
        self._epoch = 0
        # A batch the store refused is read again and applied in the loop's own thread.
        self._apply_next_now = False

    # --- assignment ---------------------------------------------------------------------
    def take(self, assigned: set[TopicPartition]) -> None:
        """Seek each new partition to the lower of the store and landing cursors.

        A partition halted by any process stays paused. One with a stored offset is paused
        until :meth:`verify_log_starts` has checked, outside this rebalance callback, that
        retention did not remove records the store never counted: otherwise the broker would
        move the consumer to the log start and the gap would pass unseen.
        """
        self.settle_all()
        self._epoch += 1
        offsets = self.store.load_offsets()
        halts = self.store.load_halts()
        for tp in sorted(assigned):
            landed = self.landing.assign(tp.partition)
            stored = offsets.get(tp.partition)
            self.stored[tp.partition] = stored
            # A partition never counted whose first records retention removed resets to the
            # earliest one still kept: nothing was counted, so nothing is skipped.
            target = landed if stored is None else min(stored, landed)
            self.consumer.seek(tp, target)
            self.sought[tp.partition] = target
            if tp.partition in halts or tp.partition in self.halted:
                reason = halts.get(tp.partition) or self.halted[tp.partition]
                self._halt(tp.partition, reason, recorded=True)
            elif stored is not None:
                self.consumer.pause(tp)
                self.unverified.add(tp.partition)
            log.info("assigned", partition=tp.partition, stored=stored, landed=landed)

    def verify_log_starts(self) -> None:
        """Resume the partitions take() paused whose log still starts at or below the stored
        offset; halt the others. A failed look-up leaves them paused for another try."""
        if not self.unverified or time.monotonic() < self._verify_after:
            return
        partitions = sorted(self.unverified)
        starts = self._log_starts(partitions)
        committed = self._committed(partitions) if starts is not None else None
        if starts is None or committed is None:
            self._verify_after = time.monotonic() + HOUSEKEEPING_S
            return
        for partition in partitions:
            self.unverified.discard(partition)
            stored = self.stored.get(partition) or 0
            self.read_through[partition] = max(stored, committed.get(partition) or 0)
            if self._start_ok(partition, starts.get(partition)):
                self.consumer.resume(TopicPartition(self.settings.topic, partition))

    def _log_starts(self, partitions: list[int]) -> dict[int, int] | None:
        """The log start offsets (bounded by the request timeout), or None if unavailable."""
        tps = [TopicPartition(self.settings.topic, p) for p in partitions]
        try:
            starts = self.consumer.beginning_offsets(tps)
        except KafkaError as exc:
            self.metrics.kafka_errors.labels("beginning_offsets").inc()
            log.warning("log start offsets unavailable; checking later", error=repr(exc))
            return None
        return {tp.partition: offset for tp, offset in starts.items()}

    def _committed(self, partitions: list[int]) -> dict[int, int | None] | None:
        """The group's committed positions (None if unavailable). A position is committed
        only after the records below it were applied, so it may pass the stored offset by
        transaction markers and aborted records alone."""
        committed = {}
        try:
            for partition in partitions:
                tp = TopicPartition(self.settings.topic, partition)
                committed[partition] = self.consumer.committed(tp, timeout_ms=LOOKUP_TIMEOUT_MS)
        except KafkaError as exc:
            self.metrics.kafka_errors.labels("committed").inc()
            log.warning("committed offsets unavailable; checking later", error=repr(exc))
            return None
        return committed

    def _start_ok(self, partition: int, start: int | None) -> bool:
        """Whether the log still holds every record not read yet (else halt).

        Judged against :attr:`read_through`, not the stored offset alone: the store follows
        the last *record* counted, and a commit marker after it may expire without loss. And
        not against the current stored offset: after the broker moved the consumer to the
        log start, the records counted from there would hide the gap below.
        """
        stored = self.stored.get(partition)
        if start is None or stored is None:
            return True
        read = self.read_through.get(partition, stored)
        if start <= read:
            return True
        reason = f"records [{read}, {start}) expired before they were counted"
        self._halt(partition, reason, stored=stored, read_through=read, log_start=start)
        return False

    def _halt(self, partition: int, reason: str, recorded: bool = False, **facts: int) -> None:
        """Stop reading a partition whose log contradicts its cursors: pause it, record the
        halt durably (a rebalance or restart must not lift it) and say so once, loudly."""
        self.consumer.pause(TopicPartition(self.settings.topic, partition))
        self.unverified.discard(partition)
        if partition in self.halted:
            return
        self.halted[partition] = reason
        self.metrics.halted.labels(str(partition)).set(1)
        self.health.halt(partition, reason)
        if not recorded:
            self.store.record_halt(partition, reason)
        log.error(
            "partition halted: its log and the stored offsets disagree (topic recreated or "
            "truncated?); nothing more of it is counted, landed or skipped until its offsets "
            "are reset",
            partition=partition,
            reason=reason,
            reset=RESET_COMMAND.format(partition=partition),
            **facts,
        )

    def release(self, revoked: set[TopicPartition]) -> None:
        """Give partitions up: their transaction in flight ends first, so their next owner
        reads offsets that hold everything this process counted."""
        self.settle_all()
        for tp in revoked:
            self.landing.revoke(tp.partition)
            self.stored.pop(tp.partition, None)
            self.sought.pop(tp.partition, None)
            self.read_through.pop(tp.partition, None)
            self.unverified.discard(tp.partition)
            # The halt itself is in the store: the partition's next owner keeps it paused.
            if self.halted.pop(tp.partition, None) is not None:
                self.health.forget_halts([tp.partition])
                self.metrics.halted.remove(str(tp.partition))
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(str(tp.partition))
            log.info("revoked", partition=tp.partition)

    # --- one poll batch -------------------------------------------------------------------
    def _prepare(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> PollCut:
        """Validate a poll batch, land it, dead-letter what is invalid (acknowledged before
        this returns) and cut what the store lacks into partition batches."""
        epoch = self._epoch
        batches = []
        for tp, records in polled.items():
            if tp.partition not in self.stored or not records or tp.partition in self.halted:
                continue
            if not self._follows_seek(tp.partition, records):
                continue
            batch = self.batcher.cut(tp.partition, records, self.stored[tp.partition])
            if batch is not None:
                batches.append(batch)
        self.metrics.consumed.inc(sum(len(r) for r in polled.values()))
        self._observe_broker_time(polled)
        self.dlq.flush()
        by_partition = {tp.partition: records for tp, records in polled.items()}
        return PollCut(batches, by_partition, epoch)

    def _apply_now(self, cut: PollCut) -> int:
        """Apply the cut's batches in this thread. A batch the store refuses is applied record
        by record; a fenced one has the layer read every partition again from the store."""
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
                    self.store, self.dlq, batches, cut.records, self.stored
                )
        except FencedError as exc:
            self._fenced(exc)
            self.take({TopicPartition(self.settings.topic, p) for p in list(self.stored)})
            return 0
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for batch in batches:
            self.stored[batch.partition] = batch.next_offset
        self._count(applied)
        return applied.events

    def _submit(self, batches: list[PartitionBatch]) -> None:
        """Start the batches' transaction in the background. The cursors move at once, so the
        next poll batch is cut from where this one ends: its transaction is fenced by that
        offset, and fails if this one does (:meth:`settle` then resynchronises)."""
        self.committer.submit(batches)
        for batch in batches:
            self.stored[batch.partition] = batch.next_offset

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
        self.take({TopicPartition(self.settings.topic, p) for p in list(self.stored)})
        return events

    def _fenced(self, exc: FencedError) -> None:
        self.metrics.fenced.inc()
        log.warning("fenced", error=str(exc))

    def _follows_seek(self, partition: int, records: list[ConsumerRecord]) -> bool:
        """Whether the records continue the log the cursors describe; if not, halt.

        After a seek the broker returns records at or above it, in order, unless the position
        was out of range and the consumer reset it to the log start: a record below the sought
        offset means the log restarted below our cursors. Counting on would double-count;
        skipping it as a replay (it lies below the cursors) would lose it.
        """
        sought = self.sought.get(partition, 0)
        first = records[0].offset  # a fetch returns a partition's records in offset order
        if first < sought:
            reason = (
                f"the broker returned offset {first} after a seek to {sought}: the log "
                "restarted below the stored offsets (topic recreated or truncated?)"
            )
            self._halt(partition, reason, sought=sought, offset_seen=first)
            return False
        self.sought[partition] = records[-1].offset + 1
        return True

    def _count(self, applied: AppliedBatch) -> None:
        self.metrics.events.inc(applied.events)
        self.metrics.duplicates.inc(applied.duplicates)
        self.metrics.rejected.inc(applied.rejected)

    def _observe_broker_time(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Each partition's newest timestamp: stamped by its leader before we read it."""
        learned_at = time.monotonic()
        for records in polled.values():
            if records:
                self.broker_clock.observe(max(map(_TIMESTAMP, records)), learned_at)

    # --- housekeeping ---------------------------------------------------------------------
    def housekeeping(self) -> None:
        """Flush old landing buffers, seal caught-up partitions, export lag and watermark, and
        tell the health watch how far the watched partitions are."""
        self.landing.flush_due()
        progress = self.layout.read_all_progress(self.settings.partitions)
        self._observe_landed_time(progress)
        own = self._owned()
        # With no partitions of its own, the process watches the whole topic: a group whose
        # members all hold nothing while records wait (a lost assignment) is a stall too.
        watched = own or list(range(self.settings.partitions))
        tps = [TopicPartition(self.settings.topic, p) for p in watched]
        broker_now_ms = self.broker_clock.now_ms()  # before the end offsets are asked
        try:
            ends = self.consumer.end_offsets(tps)
        except KafkaError as exc:
            # No answer, no confirmation: the watchdog's stall clock keeps running.
            self.metrics.kafka_errors.labels("end_offsets").inc()
            log.warning("end offsets unavailable", error=repr(exc))
            return
        end_by_partition = {tp.partition: end for tp, end in ends.items()}
        if own:
            self._check_ends(own, end_by_partition)
            self._check_starts(own)
            # A halted partition is neither sealed (its new records are not landed) nor
            # watched for progress (it makes none until a reset; a restart would not help).
            live = [p for p in own if p not in self.halted]
            positions = self._positions(live)
            counted = {p: self._past_markers(p, self._counted_through(p), positions) for p in own}
            stored = {p: counted[p] for p in live}
            if not self.resync_needed:  # positions are trustworthy only after a clean take
                highs = self._high_watermarks(live)
                if highs is not None:
                    self.landing.seal_caught_up(highs, positions, broker_now_ms)
            for partition in own:
                lag = end_by_partition.get(partition, 0) - (counted[partition] or 0)
                self.metrics.lag.labels(str(partition)).set(lag)
        else:
            known, halts = self.store.load_offsets(), self.store.load_halts()
            stored = {p: known.get(p) for p in watched if p not in halts}
            stored = self._past_markers_by_group(stored, end_by_partition)
        self.health.observe(stored, end_by_partition, own)
        self.metrics.watermark.set(landing_watermark(progress, self.settings.bucket_ms))

    def _past_markers_by_group(
        self, stored: dict[int, int | None], ends: dict[int, int]
    ) -> dict[int, int | None]:
        """How far other members are done, for a process that owns nothing: the store's
        offset stops below a partition's last commit marker for good, the group's committed
        offset (never past what is durable, :meth:`durable_offsets`) moves past it. Asked
        only for partitions that look behind; no answer leaves the store's offset."""
        done = dict(stored)
        for partition, offset in stored.items():
            if (offset or 0) >= ends.get(partition, 0):
                continue
            try:
                committed = self.consumer.committed(
                    TopicPartition(self.settings.topic, partition), timeout_ms=5000
                )
            except KafkaError:
                self.metrics.kafka_errors.labels("committed").inc()
                continue
            if committed is not None and committed > (offset or 0):
                done[partition] = committed
        return done

    def _high_watermarks(self, partitions: list[int]) -> dict[int, int] | None:
        """Each partition's high watermark: every record appended and replicated, committed
        or not (None: no answer, nothing is sealed this round).

        Sealing by time needs it, not the LSO: a record in a transaction still open sits
        below the high watermark but above the LSO, and arrives (stamped when it was
        appended) once the transaction commits. A partition is caught up only when nothing
        can still arrive below its end, so an open transaction holds its seal."""
        client = self.log_ends or self.consumer
        tps = [TopicPartition(self.settings.topic, p) for p in partitions]
        try:
            ends = client.end_offsets(tps)
        except KafkaError as exc:
            self.metrics.kafka_errors.labels("end_offsets").inc()
            log.warning("high watermarks unavailable; sealing later", error=repr(exc))
            return None
        return {tp.partition: end for tp, end in ends.items()}

    def _check_ends(self, own: list[int], ends: dict[int, int]) -> None:
        """Halt a partition whose stored or landed cursor lies beyond the log's end: an empty
        recreated topic returns no record that could contradict the sought offset."""
        for partition in own:
            if partition in self.halted or partition not in self.stored or partition not in ends:
                continue
            end = ends[partition]
            cursors = {
                "stored": self.stored[partition],
                "landed": self.landing.landed_next(partition),
            }
            for name, cursor in cursors.items():
                if cursor is not None and cursor > end:
                    reason = (
                        f"the {name} offset {cursor} is beyond the log end {end} "
                        "(topic recreated or truncated?)"
                    )
                    self._halt(partition, reason, **{name: cursor, "end": end})
                    break

    def _check_starts(self, own: list[int]) -> None:
        """Halt a partition whose log now starts above what had been read at the last check
        (retention passed records never counted, and the broker moved the consumer past them).
        No answer from the broker: the check waits for the next round."""
        counted = [
            p
            for p in own
            if self.stored.get(p) is not None and p not in self.halted and p not in self.unverified
        ]
        if not counted:
            return
        # Read before the look-up: if this check passes, no reset happened before them.
        reached = self._positions(counted)
        for partition in counted:
            reached[partition] = max(reached.get(partition, 0), self.stored[partition] or 0)
        starts = self._log_starts(counted)
        if starts is None:
            return
        for partition in counted:
            if self._start_ok(partition, starts.get(partition)):
                self.read_through[partition] = reached[partition]

    def _observe_landed_time(self, progress: list[PartitionProgress | None]) -> None:
        """Landed and sealed times of every partition (other processes' too) are broker
        times or lower bounds of them: a process owning only idle partitions learns from them."""
        learned_at = time.monotonic()
        for p in progress:
            if p is not None and p.sealed_through_ms > 0:
                self.broker_clock.observe(p.sealed_through_ms, learned_at)

    def _positions(self, partitions: list[int]) -> dict[int, int]:
        """The consumer's next fetch offset of each counted partition (past commit markers)."""
        positions = {}
        for partition in partitions:
            if partition not in self.stored:
                continue
            try:
                positions[partition] = self.consumer.position(
                    TopicPartition(self.settings.topic, partition)
                )
            except KafkaError:
                continue  # unknown: sealed by the landed offset alone
        return positions

    def _past_markers(
        self, partition: int, counted: int | None, positions: dict[int, int]
    ) -> int | None:
        """How far a partition is read and counted, past the offsets that hold no record.

        A transaction's commit or abort marker takes an offset but is never returned: after
        the last record of a transactional producer the store's offset stays one below the
        end offset for good. When every record read so far is counted (the store's offset at
        or past where the last record read ends), the consumer's position, which moves past
        markers and aborted records, is how far the partition is done: a caught-up partition
        then reports no lag and no stall."""
        position = positions.get(partition)
        if counted is None or position is None or counted < self.sought.get(partition, 0):
            return counted
        return max(counted, position)

    def durable_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per owned partition, the offset below which every record is counted in the store
        (its transactions ended) and durably landed — past the markers that follow, when that
        is every record read. The group's committed offset is read back as how far a
        partition was read (:meth:`verify_log_starts`), so it must never pass what is
        durable: the consumer's position would, by the records polled, in transactions in
        flight or landing buffers, that a crash loses."""
        own = [p for p in self._owned() if p not in self.halted and p not in self.unverified]
        positions = self._positions(own)
        unsettled = self.committer.unsettled_from()
        offsets = {}
        for partition in own:
            stored = unsettled.get(partition, self.stored.get(partition))
            landed = self.landing.durable_next(partition)
            if stored is None or landed is None:
                continue
            through = self._past_markers(partition, min(stored, landed), positions)
            if through is not None:
                tp = TopicPartition(self.settings.topic, partition)
                offsets[tp] = OffsetAndMetadata(through, "", -1)
        return offsets

    def commit_durable(self) -> None:
        """Commit :meth:`durable_offsets` to the group (asynchronously: for lag tools and
        the log-start check after a restart; the store holds the truth)."""
        offsets = self.durable_offsets()
        if offsets:
            self.consumer.commit_async(offsets=offsets)

    def _owned(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    def _counted_through(self, partition: int) -> int | None:
        """The store's next offset; for a partition the store has never counted, where the
        consumer stands (all its records may be gone by retention: then nothing waits)."""
        stored = self.stored.get(partition)
        if stored is not None or partition not in self.stored:
            return stored
        try:
            return self.consumer.position(TopicPartition(self.settings.topic, partition))
        except KafkaError:
            return None

    def rewind(self) -> None:
        """Forget what is only in memory and read again from the durable cursors.

        After a Kafka error in the middle of a batch (a DLQ send that was not acknowledged, a
        fetch that failed) the consumer's position may be past records whose effect is not in
        the store or the landing zone yet. Seeking every owned partition back to the lower of
        its two cursors, exactly as on a new assignment, makes the retry exactly-once.
        """
        try:
            self.settle_all()
        except Exception as exc:  # not in the store: read again from the stored offsets
            log.warning("the transaction in flight failed; reading it again", error=repr(exc))
        self.dlq.forget_pending()
        self.resync_needed = False
        # The queued landing writes end, so the progress read next is final; a write that
        # failed meanwhile is landed again from there, and reported here.
        unreported = self.landing.recover()
        if unreported is not None:
            self.metrics.landing_errors.inc()
            log.warning("landing zone write failed; landing again", error=repr(unreported))
        for partition in list(self.stored):
            self.landing.forget(partition)
        self.stored.clear()
        owned = set(self.consumer.assignment())
        if owned:
            self.take(owned)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; then land what is buffered, commit and leave the group.

        Kafka errors (timeouts, lost connections, unacknowledged DLQ sends) and landing zone
        write errors (a full disk) never end the loop: the batch is rewound to the durable
        cursors and retried with backoff.
        """
        self.store_process.start()
        self.consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
        last_housekeeping = 0.0
        last_expiry = time.monotonic()
        window_start, window_events = time.monotonic(), 0.0
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if self.resync_needed:
                        self.rewind()
                    window_events += self.poll_once(stop)
                    now = time.monotonic()
                    if now - last_housekeeping >= HOUSEKEEPING_S:
                        self.housekeeping()
                        self.commit_durable()
                        self.metrics.events_per_s.set(window_events / (now - window_start))
                        window_start, window_events = now, 0.0
                        last_housekeeping = now
                    failures = 0
                except (KafkaError, *LANDING_ERRORS) as exc:
                    # The landing zone cannot be written (disk full, I/O error, S3 down).
                    # Nothing unlanded was recorded as landed; the records are read again.
                    failures += 1
                    delay = retry_delay(failures)
                    if isinstance(exc, KafkaError):
                        self.metrics.kafka_errors.labels("poll_batch").inc()
                        what = "kafka error"
                    else:
                        self.metrics.landing_errors.inc()
                        what = "landing zone write failed"
                    log.warning(
                        f"{what}; rewinding to the durable cursors and retrying",
                        error=repr(exc),
                        retry_in_s=round(delay, 2),
                        failures=failures,
                    )
                    self.rewind()
                    stop.wait(delay)
                    continue
                if now - last_expiry >= DEDUP_EXPIRY_S:
                    self.store.expire_dedup()  # by record time, not the wall clock
                    last_expiry = now
        finally:
            self._shutdown()

    def poll_once(self, stop: threading.Event) -> int:
        """The loop's step: one poll; its batch is prepared while earlier batches'
        transactions run, and submitted behind them (at most ``MAX_IN_FLIGHT``: the oldest is
        waited for first). Returns the events of the transactions accounted for (the rest:
        :meth:`settle_all`). An empty poll waits for every transaction in flight, and one that
        returned early (no broker, no assignment) waits out the poll interval, so a client
        without a broker never spins."""
        self.verify_log_starts()
        started = time.monotonic()
        polled = self.consumer.poll(
            timeout_ms=POLL_MS, max_records=self.settings.speed_max_poll_records
        )
        if not polled:
            events = self.settle_all()
            remaining = POLL_MS / 1000 - (time.monotonic() - started)
            if remaining > 0:
                stop.wait(remaining)
            return events
        cut = self._prepare(polled)
        if self._apply_next_now:  # after a refused batch, until a batch got through
            events = self.settle_all()
            if cut.batches and cut.epoch == self._epoch:
                self._apply_next_now = False
                events += self._apply_now(cut)
            return events
        events = self.settle() if self.committer.full else 0
        if cut.batches and cut.epoch == self._epoch:
            self._submit(cut.batches)
        return events

    def _shutdown(self) -> None:
        """End the transaction in flight, land what is buffered, then leave the group;
        bounded even without a broker."""
        try:
            self.settle_all()
        except Exception as exc:  # not in the store: the next owner reads it again
            log.warning("the transaction in flight failed", error=repr(exc))
        self.committer.close()
        self.store_process.close()
        for partition in self.landing.partitions:
            try:
                self.landing.flush(partition)
            except LANDING_ERRORS as exc:  # its landing progress stays behind: read again later
                log.warning("could not land buffered records", partition=partition, error=repr(exc))
        self.landing.close()
        try:
            offsets = self.durable_offsets()  # everything settled and landed by now
            if offsets:
                self.consumer.commit(offsets=offsets, timeout_ms=SHUTDOWN_TIMEOUT_MS)
        except Exception as exc:  # the store holds the truth; this is for lag tools only
            log.warning("final kafka commit failed", error=repr(exc))
        try:
            self.consumer.close(autocommit=False, timeout_ms=SHUTDOWN_TIMEOUT_MS)
        except Exception as exc:
            log.warning("consumer close failed", error=repr(exc))
        log.info("stopped")
