"""The speed layer's poll loop: poll, cut, commit, housekeeping, until told to stop.

One instance per process; several processes in the consumer group ``speed-layer`` share the
partitions. Per poll batch: invalid records go to the DLQ (flushed first), valid ones to the
landing buffer and — if not yet counted — to one store transaction that also moves the offsets.
The loop's step is :meth:`SpeedLayer.poll_once`; around it the jobs are the other modules':

- :mod:`speed_layer.partition_guard`: the cursors each partition is sought to, halts, log checks;
- :mod:`speed_layer.batcher`: a partition's polled records into what the store and landing lack;
- :mod:`speed_layer.commit_pipeline`: the store transactions in flight, in order, and the
  durable offsets committed to the group;
- :mod:`speed_layer.housekeeping`: flushes, log checks, idle seals, lag and health, each second.

Kafka errors and landing write errors never end the loop: it reads again from the durable
cursors (:meth:`SpeedLayer.rewind`) and retries with backoff.
"""

from __future__ import annotations

import random
import threading
import time
from operator import attrgetter

import structlog
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from lambda_contracts.kafka_access import REFUSALS
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.storage import StorageError
from lambda_contracts.view_set import ViewSet
from speed_layer.batcher import Batcher
from speed_layer.broker_clock import BrokerClock
from speed_layer.commit_pipeline import CommitPipeline, PollCut
from speed_layer.dlq import DeadLetters
from speed_layer.health import Health
from speed_layer.housekeeping import Housekeeping
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from speed_layer.partition_guard import PartitionGuard
from speed_layer.store import SpeedStore
from speed_layer.store_deploy import drop_retired, serving_on_current

log = structlog.get_logger("speed_layer")

_TIMESTAMP = attrgetter("timestamp")

HOUSEKEEPING_S = 1.0
DEDUP_EXPIRY_S = 60.0
POLL_MS = 100
# The landing zone cannot be written: a local disk full or failing, or S3 refusing or down.
LANDING_ERRORS = (OSError, StorageError)
SHUTDOWN_TIMEOUT_MS = 5000  # a stop must not wait on a broker that is gone
RETRY_BASE_S, RETRY_MAX_S = 0.5, 10.0


def retry_delay(failures: int) -> float:
    """Exponential backoff with jitter for the ``failures``-th consecutive Kafka error."""
    exponent = min(max(0, failures - 1), 16)
    return min(RETRY_MAX_S, RETRY_BASE_S * 2**exponent) * random.uniform(0.8, 1.2)


class _Rebalance(ConsumerRebalanceListener):
    """Runs inside ``consumer.poll()`` on the polling thread (kafka-python 2.x).

    kafka-python only logs an exception raised here, so a failed ``take`` (the store or the
    landing progress unreadable for a moment) would leave a partition assigned but never
    sought: the loop is told to resynchronise instead.
    """

    def __init__(self, pipeline: CommitPipeline) -> None:
        self.pipeline = pipeline

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            self.pipeline.release(revoked)
        except Exception:
            log.exception("releasing partitions failed; resynchronising")
            self.pipeline.guard.resync_needed = True

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self.pipeline.take(assigned)
        except Exception:
            log.exception("taking partitions failed; resynchronising")
            self.pipeline.guard.resync_needed = True


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
        views: ViewSet | None = None,
    ) -> None:
        assert settings.speed_store_url is not None
        self.settings = settings
        self.consumer = consumer
        self.dlq = dead_letters
        self.metrics = metrics
        self.health = health or Health(settings.speed_unhealthy_after_s)
        self.layout = Layout.of(settings)
        # This process's own store connection: offsets, halts, a batch applied record by record.
        self.store = SpeedStore.from_settings(settings, views)
        # Before the store process starts: it computes the views the deploy leaves in force.
        deployed = self.store.deploy(serving_on_current(self.layout))
        log.info(
            "views deployed",
            fingerprint=deployed.fingerprint,
            added=deployed.added,
            retired=deployed.retired,
            previous=[f"{d.name}@{d.version}" for d in deployed.views.previous],
        )
        self.landing = LandingWriter(
            self.layout,
            settings.bucket_ms,
            settings.landing_flush_ms,
            settings.landing_flush_records,
            settings.idle_seal_grace_ms or 0,
        )
        self.batcher = Batcher(self.landing, dead_letters, metrics)
        self.broker_clock = BrokerClock()
        self.guard = PartitionGuard(
            settings.topic, consumer, self.store, self.landing, metrics, self.health
        )
        self.pipeline = CommitPipeline(
            settings, consumer, self.guard, self.store, dead_letters, self.landing, metrics
        )
        self.housekeeper = Housekeeping(
            settings,
            consumer,
            log_ends,
            self.guard,
            self.store,
            self.landing,
            self.layout,
            self.broker_clock,
            metrics,
            self.health,
        )

    def _drop_retired_views(self) -> None:
        """Drop the speed tables of view versions retired a while ago (cleanup only)."""
        dropped = drop_retired(self.store.engine, int(time.time() * 1000))
        if dropped:
            log.info("retired views' speed tables dropped", tables=dropped)

    def housekeeping(self) -> None:
        """The chores between polls (:class:`Housekeeping`)."""
        self.housekeeper.run()

    def rewind(self) -> None:
        """Forget what is only in memory and read again from the durable cursors.

        After a Kafka error in the middle of a batch (a DLQ send that was not acknowledged, a
        fetch that failed) the consumer's position may be past records whose effect is not in
        the store or the landing zone yet. Seeking every owned partition back to the lower of
        its two cursors, exactly as on a new assignment, makes the retry exactly-once.
        """
        try:
            self.pipeline.settle_all()
        except Exception as exc:  # not in the store: read again from the stored offsets
            log.warning("the transaction in flight failed; reading it again", error=repr(exc))
        self.dlq.forget_pending()
        self.guard.resync_needed = False
        # The queued landing writes end, so the progress read next is final; a write that
        # failed meanwhile is landed again from there, and reported here.
        unreported = self.landing.recover()
        if unreported is not None:
            self.metrics.landing_errors.inc()
            log.warning("landing zone write failed; landing again", error=repr(unreported))
        self.guard.forget_cursors()
        owned = set(self.consumer.assignment())
        if owned:
            self.pipeline.take(owned)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; then land what is buffered, commit and leave the group.

        Kafka errors (timeouts, lost connections, unacknowledged DLQ sends) and landing zone
        write errors (a full disk) never end the loop: the batch is rewound to the durable
        cursors and retried with backoff.
        """
        self.pipeline.start()
        self.consumer.subscribe([self.settings.topic], listener=_Rebalance(self.pipeline))
        last_housekeeping = 0.0
        last_expiry = time.monotonic()
        window_start, window_events = time.monotonic(), 0.0
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if self.guard.resync_needed:
                        self.rewind()
                    window_events += self.poll_once(stop)
                    now = time.monotonic()
                    if now - last_housekeeping >= HOUSEKEEPING_S:
                        self.housekeeping()
                        self.pipeline.commit_durable()
                        self.metrics.events_per_s.set(window_events / (now - window_start))
                        window_start, window_events = now, 0.0
                        last_housekeeping = now
                    failures = 0
                except REFUSALS:  # a missing ACL: retrying cannot help, the process exits 78
                    raise
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
                    self._drop_retired_views()
                    last_expiry = now
        finally:
            self._shutdown()

    def poll_once(self, stop: threading.Event) -> int:
        """The loop's step: one poll; its batch is cut while earlier batches' transactions
        run, and committed behind them (:meth:`CommitPipeline.commit`). Returns the events of
        the transactions accounted for (the rest: :meth:`CommitPipeline.settle_all`). An
        empty poll waits for every transaction in flight, and one that returned early (no
        broker, no assignment) waits out the poll interval, so a client without a broker
        never spins."""
        self.guard.verify_log_starts()
        started = time.monotonic()
        polled = self.consumer.poll(
            timeout_ms=POLL_MS, max_records=self.settings.speed_max_poll_records
        )
        if not polled:
            events = self.pipeline.settle_all()
            remaining = POLL_MS / 1000 - (time.monotonic() - started)
            if remaining > 0:
                stop.wait(remaining)
            return events
        return self.pipeline.commit(self._cut(polled))

    def _cut(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> PollCut:
        """Validate a poll batch, land it, dead-letter what is invalid (acknowledged before
        this returns) and cut what the store lacks into partition batches."""
        guard = self.guard
        epoch = guard.epoch
        batches = []
        for tp, records in polled.items():
            if tp.partition not in guard.stored or not records or tp.partition in guard.halted:
                continue
            if not guard.follows_seek(tp.partition, records):
                continue
            batch = self.batcher.cut(tp.partition, records, guard.stored[tp.partition])
            if batch is not None:
                batches.append(batch)
        self.metrics.consumed.inc(sum(len(r) for r in polled.values()))
        self._observe_broker_time(polled)
        self.dlq.flush()
        by_partition = {tp.partition: records for tp, records in polled.items()}
        return PollCut(batches, by_partition, epoch)

    def _observe_broker_time(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Each partition's newest timestamp: stamped by its leader before we read it."""
        learned_at = time.monotonic()
        for records in polled.values():
            if records:
                self.broker_clock.observe(max(map(_TIMESTAMP, records)), learned_at)

    def _shutdown(self) -> None:
        """End the transaction in flight, land what is buffered, then leave the group;
        bounded even without a broker."""
        try:
            self.pipeline.settle_all()
        except Exception as exc:  # not in the store: the next owner reads it again
            log.warning("the transaction in flight failed", error=repr(exc))
        self.pipeline.close()
        for partition in self.landing.partitions:
            try:
                self.landing.flush(partition)
            except LANDING_ERRORS as exc:  # its landing progress stays behind: read again later
                log.warning("could not land buffered records", partition=partition, error=repr(exc))
        self.landing.close()
        try:  # everything settled and landed by now
            self.pipeline.commit_durable(timeout_ms=SHUTDOWN_TIMEOUT_MS)
        except Exception as exc:  # the store holds the truth; this is for lag tools only
            log.warning("final kafka commit failed", error=repr(exc))
        try:
            self.consumer.close(autocommit=False, timeout_ms=SHUTDOWN_TIMEOUT_MS)
        except Exception as exc:
            log.warning("consumer close failed", error=repr(exc))
        log.info("stopped")
