"""Records from a transactional producer: every partition still seals once idle.

Each committed transaction leaves a commit marker in the partition: it takes an offset but is
never returned to the consumer, so the last record consumed stays one below the end offset.
Sealing judges "caught up" by the consumer's position, which moves past the marker.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from lambda_contracts.db import make_engine
from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout
from tests.support.pipeline import (
    SpeedProcess,
    end_offsets,
    free_port,
    landed_rows,
    open_transaction,
    stored_offsets,
    wait_until,
    wait_watermark,
)

pytestmark = pytest.mark.integration

BUCKET_MS = 2000


def test_partitions_written_in_transactions_seal_when_idle(make_settings) -> None:
    settings = make_settings(
        bucket_ms=BUCKET_MS, landing_flush_ms=200, idle_seal_grace_ms=200, partitions=3
    )
    producer = KafkaProducer(
        **settings.kafka_client_config,
        transactional_id=f"tx-test-{uuid.uuid4().hex[:8]}",
    )
    producer.init_transactions()
    stamps: list[int] = []
    for batch in range(3):
        producer.begin_transaction()
        futures = []
        for partition in (0, 1):  # partition 2 gets nothing at all
            for i in range(5):
                event = Transaction(
                    TransactionID=f"x{batch}-{partition}-{i}",
                    CreatedTime=int(time.time() * 1000),
                    SourceAccountID=f"a{partition}",
                    TargetAccountID="t",
                    Amount=Decimal("2.50"),
                )
                futures.append(
                    producer.send(
                        settings.topic, event.to_json_bytes(), event.key, partition=partition
                    )
                )
        producer.commit_transaction()
        stamps += [f.get(30).timestamp for f in futures]
    producer.close()

    with SpeedProcess(settings):
        newest_bucket_end = max(stamps) - max(stamps) % BUCKET_MS + BUCKET_MS
        wait_watermark(settings, newest_bucket_end, timeout=60)
    layout = Layout.of(settings)
    assert len(landed_rows(layout)) == len(stamps) == 30
    for partition in range(settings.partitions):
        progress = layout.read_progress(partition)
        assert progress is not None and progress.sealed_through_ms >= newest_bucket_end


def test_a_partition_ending_in_a_commit_marker_is_caught_up_not_stalled(make_settings) -> None:
    """The last offset of a partition is a commit marker: end offset = stored offset + 1, and
    no record will ever come to move the stored offset there. The process is caught up: no
    lag, healthy, and its watchdog does not restart it (it did every exit bound)."""
    settings = make_settings(
        partitions=1,
        speed_unhealthy_after_s=2.0,
        speed_exit_after_s=5.0,
        speed_metrics_port=free_port(),
    )
    producer, _ = open_transaction(settings, "m1", "a", "1.00")
    producer.commit_transaction()
    producer.close()
    assert end_offsets(settings) == {0: 2}  # the record and its commit marker

    with SpeedProcess(settings, metrics=True) as speed:
        engine = make_engine(settings.speed_store_url)
        wait_until(lambda: stored_offsets(engine, settings.topic) == {0: 1}, 60, "counted")
        time.sleep(3 * settings.speed_exit_after_s)  # past the exit bound, caught up all along
        assert speed.alive(), SpeedProcess.recent_logs()
        report = speed.health()
        assert report is not None and report["status"] == "ok", report
        assert report["lag"] == 0, report


def test_a_member_owning_nothing_is_not_stalled_by_a_commit_marker(make_settings) -> None:
    """A process that owns no partition watches the whole topic; judged by the store's
    offset, which stays below the last commit marker for good, it saw records waiting that
    nobody read and exited every exit bound. The group's committed offset moves past it."""
    settings = make_settings(
        partitions=1,
        speed_unhealthy_after_s=2.0,
        speed_exit_after_s=5.0,
        speed_idle_exit_extra_s=0.0,
        speed_metrics_port=free_port(),
    )
    producer, _ = open_transaction(settings, "m2", "a", "1.00")
    producer.commit_transaction()
    producer.close()
    assert end_offsets(settings) == {0: 2}

    with SpeedProcess(settings, metrics=True) as first:
        engine = make_engine(settings.speed_store_url)
        wait_until(lambda: stored_offsets(engine, settings.topic) == {0: 1}, 60, "counted")
        with SpeedProcess(settings, instance=1, metrics=True) as second:
            members = (first, second)

            def one_owns_nothing() -> bool:
                reports = [speed.health() for speed in members]
                owned = [r["partitions"] for r in reports if r is not None]
                return sorted(owned) == [[], [0]]

            wait_until(one_owns_nothing, 90, "the group settled: one member owns nothing")
            time.sleep(3 * settings.speed_exit_after_s)  # past the exit bound, idle all along
            for speed in members:
                assert speed.alive(), SpeedProcess.recent_logs()
                report = speed.health()
                assert report is not None and report["status"] == "ok", report
                assert report["lag"] == 0, report


def test_an_open_transaction_holds_the_seal_of_its_partition(make_settings) -> None:
    """Issue 32, item 3: a record in a transaction still open is stamped when it is appended
    and arrives once the transaction commits. The read_committed end offset (the LSO) stops
    before it, so judged by the LSO the partition looked caught up and was sealed past the
    record's time (the brokers' clock known from the records of partition 1): the record then
    landed in a sealed bucket, which a batch run may already have absorbed (lost from every
    answer until a rebuild). Judged by the high watermark, the open transaction holds the seal
    below the record's time until it commits."""
    settings = make_settings(
        bucket_ms=BUCKET_MS, landing_flush_ms=200, idle_seal_grace_ms=200, partitions=2
    )
    layout = Layout.of(settings)
    producer, stamp = open_transaction(settings, "held-1", "held", "3.00")
    plain = KafkaProducer(**settings.kafka_client_config)
    sent = 0
    try:
        with SpeedProcess(settings) as speed:
            wait_until(speed.started, 60, "the speed process started")
            deadline = time.monotonic() + 6 * BUCKET_MS / 1000  # buckets close meanwhile
            while time.monotonic() < deadline:
                event = Transaction(
                    TransactionID=f"p1-{sent}",
                    CreatedTime=int(time.time() * 1000),
                    SourceAccountID="other",
                    TargetAccountID="t",
                    Amount=Decimal("1.00"),
                )
                plain.send(settings.topic, event.to_json_bytes(), event.key, partition=1).get(30)
                sent += 1
                progress = layout.read_progress(0)  # None: nothing landed or sealed yet
                sealed = progress.sealed_through_ms if progress else 0
                assert sealed <= stamp, (sealed, stamp)
                time.sleep(0.2)
            producer.commit_transaction()
            rows: list[dict] = []

            def landed() -> bool:
                rows[:] = [r for r in landed_rows(layout) if r["kafka_partition"] == 0]
                return len(rows) == 1

            wait_until(landed, 60, "the committed record landed")
            assert rows[0]["transaction_id"] == "held-1" and rows[0]["kafka_ts"] == stamp
            bucket_end = stamp - stamp % BUCKET_MS + BUCKET_MS
            wait_watermark(settings, bucket_end, timeout=60)  # and then it seals past it
    finally:
        producer.close()
        plain.close()
    assert sent > 10
