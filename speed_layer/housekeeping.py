"""The loop's chores between polls: land old buffers, check the logs, seal, report progress.

Once a second (``HOUSEKEEPING_S`` in :mod:`speed_layer.consumer`) the loop flushes the landing
buffers that are old or large, checks each owned partition's log against its cursors
(:class:`PartitionGuard`), seals the partitions that are caught up by the brokers' clock
(:mod:`speed_layer.broker_clock`), exports lag and the landing watermark, and tells the health
watch how far the watched partitions are (its own, or every partition while it owns none).
"""

from __future__ import annotations

import time

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from lambda_contracts.layout import Layout, PartitionProgress, landing_watermark
from lambda_contracts.settings import Settings
from speed_layer.broker_clock import BrokerClock
from speed_layer.health import Health
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.partition_guard import PartitionGuard
from speed_layer.store import SpeedStore

log = structlog.get_logger("speed_layer")


class Housekeeping:
    """Flushes, log checks, idle seals, lag, watermark and health, between polls."""

    def __init__(
        self,
        settings: Settings,
        consumer: KafkaConsumer,
        log_ends: KafkaConsumer | None,
        guard: PartitionGuard,
        store: SpeedStore,
        landing: LandingWriter,
        layout: Layout,
        broker_clock: BrokerClock,
        metrics: SpeedMetrics,
        health: Health,
    ) -> None:
        self.topic = settings.topic
        self.partitions = settings.partitions
        self.bucket_ms = settings.bucket_ms
        self.layout = layout
        self.consumer = consumer
        # A read_uncommitted client for the high watermarks: the consumer's own end offsets
        # are the LSO, which an open transaction holds back (None: the consumer's, in tests).
        self.log_ends = log_ends
        self.guard = guard
        self.store = store
        self.landing = landing
        self.broker_clock = broker_clock
        self.metrics = metrics
        self.health = health

    def run(self) -> None:
        """Flush old landing buffers, seal caught-up partitions, export lag and watermark, and
        tell the health watch how far the watched partitions are."""
        self.landing.flush_due()
        progress = self.layout.read_all_progress(self.partitions)
        self._observe_landed_time(progress)
        guard = self.guard
        own = guard.owned()
        # With no partitions of its own, the process watches the whole topic: a group whose
        # members all hold nothing while records wait (a lost assignment) is a stall too.
        watched = own or list(range(self.partitions))
        tps = [TopicPartition(self.topic, p) for p in watched]
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
            guard.check_ends(own, end_by_partition)
            guard.check_starts(own)
            # A halted partition is neither sealed (its new records are not landed) nor
            # watched for progress (it makes none until a reset; a restart would not help).
            live = [p for p in own if p not in guard.halted]
            positions = guard.positions(live)
            counted = {p: guard.past_markers(p, guard.counted_through(p), positions) for p in own}
            stored = {p: counted[p] for p in live}
            if not guard.resync_needed:  # positions are trustworthy only after a clean take
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
        self.metrics.watermark.set(landing_watermark(progress, self.bucket_ms))

    def _observe_landed_time(self, progress: list[PartitionProgress | None]) -> None:
        """Landed and sealed times of every partition (other processes' too) are broker
        times or lower bounds of them: a process owning only idle partitions learns from them."""
        learned_at = time.monotonic()
        for p in progress:
            if p is not None and p.sealed_through_ms > 0:
                self.broker_clock.observe(p.sealed_through_ms, learned_at)

    def _past_markers_by_group(
        self, stored: dict[int, int | None], ends: dict[int, int]
    ) -> dict[int, int | None]:
        """How far other members are done, for a process that owns nothing: the store's
        offset stops below a partition's last commit marker for good, the group's committed
        offset (never past what is durable, :meth:`CommitPipeline.durable_offsets`) moves past
        it. Asked only for partitions that look behind; no answer leaves the store's offset."""
        done = dict(stored)
        for partition, offset in stored.items():
            if (offset or 0) >= ends.get(partition, 0):
                continue
            try:
                committed = self.consumer.committed(
                    TopicPartition(self.topic, partition), timeout_ms=5000
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
        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            ends = client.end_offsets(tps)
        except KafkaError as exc:
            self.metrics.kafka_errors.labels("end_offsets").inc()
            log.warning("high watermarks unavailable; sealing later", error=repr(exc))
            return None
        return {tp.partition: end for tp, end in ends.items()}
