"""Guards each owned partition's cursors against its log: seeks, halts and log checks.

On (re)assignment each partition is sought to the lower of two cursors: the store's offset
(what the aggregates hold) and the landing progress (what is durably landed); records below a
cursor are not applied to that sink again.

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
import time

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from speed_layer.health import Health
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.store import SpeedStore

log = structlog.get_logger("speed_layer")

LOOKUP_TIMEOUT_MS = 10_000  # a committed-offset look-up that waits longer is retried later
LOOKUP_RETRY_S = 1.0  # a log-start look-up without an answer is tried again after this
RESET_COMMAND = (
    "stop the speed processes (make down), then: lambda-speed reset-offsets "
    "--partition {partition} --to-beginning|--to-end|--to OFFSET"
)


class PartitionGuard:
    """The cursors of the partitions this process owns, checked against their logs."""

    def __init__(
        self,
        topic: str,
        consumer: KafkaConsumer,
        store: SpeedStore,
        landing: LandingWriter,
        metrics: SpeedMetrics,
        health: Health,
    ) -> None:
        self.topic = topic
        self.consumer = consumer
        self.store = store
        self.landing = landing
        self.metrics = metrics
        self.health = health
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
        # A rebalance callback failed: the cursors must be sought again (positions until
        # then are not to be trusted).
        self.resync_needed = False
        # Moves each time the partitions are sought again: a poll batch prepared before that
        # is not submitted (its records will be read again).
        self.epoch = 0

    # --- assignment ---------------------------------------------------------------------
    def take(self, assigned: set[TopicPartition]) -> None:
        """Seek each new partition to the lower of the store and landing cursors (with no
        store transaction in flight: :meth:`CommitPipeline.take`).

        A partition halted by any process stays paused. One with a stored offset is paused
        until :meth:`verify_log_starts` has checked, outside this rebalance callback, that
        retention did not remove records the store never counted: otherwise the broker would
        move the consumer to the log start and the gap would pass unseen.
        """
        self.epoch += 1
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

    def release(self, revoked: set[TopicPartition]) -> None:
        """Give partitions up (with no store transaction in flight, so that their next owner
        reads offsets that hold everything this process counted)."""
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

    def forget_cursors(self) -> None:
        """Drop every partition's cursors and landing buffer: what is only in memory is read
        again from the durable cursors (then :meth:`take`)."""
        for partition in list(self.stored):
            self.landing.forget(partition)
        self.stored.clear()

    def owned(self) -> list[int]:
        return sorted(tp.partition for tp in self.consumer.assignment())

    # --- the log against the cursors ----------------------------------------------------
    def verify_log_starts(self) -> None:
        """Resume the partitions take() paused whose log still starts at or below the stored
        offset; halt the others. A failed look-up leaves them paused for another try."""
        if not self.unverified or time.monotonic() < self._verify_after:
            return
        partitions = sorted(self.unverified)
        starts = log_starts(self.consumer, self.topic, partitions, self.metrics)
        committed: dict[int, int | None] | None = None
        if starts is not None:
            committed = committed_positions(self.consumer, self.topic, partitions, self.metrics)
        if starts is None or committed is None:
            self._verify_after = time.monotonic() + LOOKUP_RETRY_S
            return
        for partition in partitions:
            self.unverified.discard(partition)
            stored = self.stored.get(partition) or 0
            self.read_through[partition] = max(stored, committed.get(partition) or 0)
            if self._start_ok(partition, starts.get(partition)):
                self.consumer.resume(TopicPartition(self.topic, partition))

    def follows_seek(self, partition: int, records: list[ConsumerRecord]) -> bool:
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

    def check_ends(self, own: list[int], ends: dict[int, int]) -> None:
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

    def check_starts(self, own: list[int]) -> None:
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
        reached = self.positions(counted)
        for partition in counted:
            reached[partition] = max(reached.get(partition, 0), self.stored[partition] or 0)
        starts = log_starts(self.consumer, self.topic, counted, self.metrics)
        if starts is None:
            return
        for partition in counted:
            if self._start_ok(partition, starts.get(partition)):
                self.read_through[partition] = reached[partition]

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
        self.consumer.pause(TopicPartition(self.topic, partition))
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

    # --- how far each partition is done -------------------------------------------------
    def positions(self, partitions: list[int]) -> dict[int, int]:
        """The consumer's next fetch offset of each counted partition (past commit markers)."""
        positions = {}
        for partition in partitions:
            if partition not in self.stored:
                continue
            try:
                positions[partition] = self.consumer.position(TopicPartition(self.topic, partition))
            except KafkaError:
                continue  # unknown: sealed by the landed offset alone
        return positions

    def past_markers(
        self, partition: int, counted: int | None, positions: dict[int, int]
    ) -> int | None:
        """How far an owned partition is read and counted (:func:`done_through`)."""
        return done_through(counted, positions.get(partition), self.sought.get(partition, 0))

    def counted_through(self, partition: int) -> int | None:
        """The store's next offset; for a partition the store has never counted, where the
        consumer stands (all its records may be gone by retention: then nothing waits)."""
        stored = self.stored.get(partition)
        if stored is not None or partition not in self.stored:
            return stored
        try:
            return self.consumer.position(TopicPartition(self.topic, partition))
        except KafkaError:
            return None


def done_through(counted: int | None, position: int | None, read_next: int) -> int | None:
    """How far a partition is read and counted, past the offsets that hold no record:
    ``counted`` is the store's next offset, ``position`` the consumer's, ``read_next`` the
    offset after the last record read.

    A transaction's commit or abort marker takes an offset but is never returned: after the
    last record of a transactional producer the store's offset stays one below the end offset
    for good. When every record read so far is counted (the store's offset at or past where
    the last record read ends), the consumer's position, which moves past markers and aborted
    records, is how far the partition is done: a caught-up partition then reports no lag and
    no stall."""
    if counted is None or position is None or counted < read_next:
        return counted
    return max(counted, position)


def log_starts(
    consumer: KafkaConsumer, topic: str, partitions: list[int], metrics: SpeedMetrics
) -> dict[int, int] | None:
    """The log start offsets (bounded by the request timeout), or None if unavailable."""
    tps = [TopicPartition(topic, p) for p in partitions]
    try:
        starts = consumer.beginning_offsets(tps)
    except KafkaError as exc:
        metrics.kafka_errors.labels("beginning_offsets").inc()
        log.warning("log start offsets unavailable; checking later", error=repr(exc))
        return None
    return {tp.partition: offset for tp, offset in starts.items()}


def committed_positions(
    consumer: KafkaConsumer, topic: str, partitions: list[int], metrics: SpeedMetrics
) -> dict[int, int | None] | None:
    """The group's committed positions (None if unavailable). A position is committed only
    after the records below it were applied, so it may pass the stored offset by transaction
    markers and aborted records alone."""
    committed = {}
    try:
        for partition in partitions:
            tp = TopicPartition(topic, partition)
            committed[partition] = consumer.committed(tp, timeout_ms=LOOKUP_TIMEOUT_MS)
    except KafkaError as exc:
        metrics.kafka_errors.labels("committed").inc()
        log.warning("committed offsets unavailable; checking later", error=repr(exc))
        return None
    return committed
