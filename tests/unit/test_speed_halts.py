"""The speed layer never skips silently: a log that contradicts the stored cursors halts the
partition (paused, recorded, reported) instead of being read, and ``reset-offsets`` lifts it.

The loop runs with stand-in Kafka clients (``tests.support.fakes``) on a real SQLite store and
landing zone; records of a "recreated topic" reuse offsets the store has already counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError

import speed_layer.partition_guard as guard_module
from infra import platform
from lambda_contracts.layout import Layout, PartitionProgress
from lambda_contracts.settings import Settings
from speed_layer.consumer import SpeedLayer
from speed_layer.health import Health, Watchdog
from speed_layer.metrics import SpeedMetrics
from speed_layer.reset import ResetRefused, Target, apply_reset, targets_for
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record, poll_and_settle
from tests.support.pipeline import landed_rows

NOW_MS = 1_700_000_000_000


def new_layer(tmp_path: Path) -> SpeedLayer:
    """A fresh process on the durable state under ``tmp_path``, owning partitions 0 and 1."""
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=2, bucket_ms=1000)
    consumer = FakeConsumer([0, 1])
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics(), Health(30.0))  # type: ignore[arg-type]
    layer.pipeline.take(consumer.assignment())
    layer.guard.verify_log_starts()
    return layer


def fake(layer: SpeedLayer) -> FakeConsumer:
    return layer.consumer  # type: ignore[return-value]


def counted_once(tmp_path: Path, counts: dict[int, int]) -> None:
    """A first process counts and lands ``counts[p]`` records of each partition, then stops."""
    layer = new_layer(tmp_path)
    records = [
        event_record(p, o, f"old{p}", NOW_MS + o) for p, n in counts.items() for o in range(n)
    ]
    poll_and_settle(layer, records)
    for partition in counts:
        layer.landing.flush(partition)


def halted_metric(layer: SpeedLayer, partition: int) -> float | None:
    return layer.metrics.registry.get_sample_value(
        "speed_partition_halted", {"partition": str(partition)}
    )


def landed_offsets(tmp_path: Path, partition: int) -> list[int]:
    rows = landed_rows(Layout(tmp_path))
    return sorted(r["kafka_offset"] for r in rows if r["kafka_partition"] == partition)


def test_a_record_below_the_sought_offset_halts_only_its_partition(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5, 1: 3})
    layer = new_layer(tmp_path)
    assert layer.guard.sought == {0: 5, 1: 3}
    assert not fake(layer).paused_partitions  # log starts checked: both resumed
    # Partition 0's topic was recreated: the broker reset the position to its new start.
    recreated = [event_record(0, o, "new", NOW_MS + 10_000 + o) for o in range(3)]
    going_on = [event_record(1, o, "old1", NOW_MS + o) for o in range(3, 5)]
    events = poll_and_settle(layer, recreated + going_on)

    assert events == 2  # partition 1 only
    assert layer.store.load_offsets() == {0: 5, 1: 5}
    assert landed_offsets(tmp_path, 0) == [0, 1, 2, 3, 4]  # the old ones, nothing new
    assert layer.landing.landed_next(0) == 5
    assert fake(layer).paused_partitions == {0}
    reason = layer.guard.halted[0]
    assert "offset 0 after a seek to 5" in reason and "recreated or truncated" in reason
    assert halted_metric(layer, 0) == 1 and halted_metric(layer, 1) is None
    report = layer.health.report().as_json()
    assert report["status"] == "halted" and report["halted"] == {"0": reason}
    assert not layer.health.report().healthy
    assert layer.store.load_halts() == {0: reason}
    assert fake(layer).positions[0] == 3 and not layer.dlq.sent  # type: ignore[attr-defined]

    # Later polls of the halted partition (records fetched before the pause) change nothing.
    assert poll_and_settle(layer, [event_record(0, 3, "new", NOW_MS)]) == 0
    assert layer.store.load_offsets()[0] == 5


def test_a_halt_survives_a_rewind_and_a_new_owner(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5})
    layer = new_layer(tmp_path)
    poll_and_settle(layer, [event_record(0, 0, "new", NOW_MS)])
    assert 0 in layer.guard.halted

    layer.rewind()  # after a Kafka error: the halted partition stays paused
    layer.guard.verify_log_starts()
    assert fake(layer).paused_partitions == {0} and 0 in layer.guard.halted

    layer.pipeline.release(fake(layer).assignment())  # a rebalance: the halt is in the store
    assert not layer.health.report().as_json().get("halted")
    successor = new_layer(tmp_path)
    assert fake(successor).paused_partitions == {0}
    assert successor.guard.halted[0] == layer.store.load_halts()[0]
    assert successor.health.report().status == "halted"


def test_a_stored_offset_beyond_the_log_end_halts_at_housekeeping(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5, 1: 3})
    sealed_before = Layout(tmp_path).read_progress(0)
    layer = new_layer(tmp_path)
    fake(layer).ends = {0: 0, 1: 3}  # partition 0 recreated, still empty: no record to see
    layer.broker_clock.observe(NOW_MS + 60_000)
    layer.housekeeping()
    layer.landing.wait()  # the landing writes run behind the loop

    assert "stored offset 5 is beyond the log end 0" in layer.guard.halted[0]
    assert 1 not in layer.guard.halted and fake(layer).paused_partitions == {0}
    # Nothing of the new log is landed, so its time must not be sealed either.
    assert Layout(tmp_path).read_progress(0) == sealed_before
    progress = Layout(tmp_path).read_progress(1)
    assert progress is not None and progress.sealed_through_ms > NOW_MS


def test_records_expired_before_they_were_counted_halt_at_take(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5, 1: 3})
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=2, bucket_ms=1000)
    consumer = FakeConsumer([0, 1])
    consumer.starts = {0: 8, 1: 2}  # retention removed [5, 8) of partition 0, uncounted
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    layer.pipeline.take(consumer.assignment())
    assert consumer.paused_partitions == {0, 1}  # until the log starts are checked
    layer.guard.verify_log_starts()

    assert layer.guard.halted == {0: "records [5, 8) expired before they were counted"}
    assert consumer.paused_partitions == {0}


def test_records_expiring_while_running_halt_even_if_counting_went_on(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5, 1: 3})
    layer = new_layer(tmp_path)
    # Retention removed [5, 12); the broker moved the consumer to 12 and three records were
    # counted from there before the next look: the stored offset (15) alone hides the gap.
    assert poll_and_settle(layer, [event_record(0, o, "a", NOW_MS) for o in (12, 13, 14)]) == 3
    fake(layer).ends = {0: 15, 1: 3}
    fake(layer).starts = {0: 12}
    layer.housekeeping()
    assert layer.guard.halted == {0: "records [5, 12) expired before they were counted"}


def test_an_expired_commit_marker_is_no_gap(tmp_path: Path) -> None:
    """The store follows the last record (offset 4); offset 5 was a transaction's commit
    marker, read past by the consumer (committed position 6) and since removed by retention."""
    counted_once(tmp_path, {0: 5})
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=2, bucket_ms=1000)
    consumer = FakeConsumer([0, 1])
    consumer.starts, consumer.ends, consumer.committed_offsets = {0: 6}, {0: 6}, {0: 6}
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    layer.pipeline.take(consumer.assignment())
    layer.guard.verify_log_starts()
    assert not layer.guard.halted and not consumer.paused_partitions
    consumer.positions[0] = 6  # the consumer fetches from 6 on
    layer.housekeeping()
    assert not layer.guard.halted and layer.guard.read_through[0] == 6


def test_an_unanswered_log_start_keeps_the_partition_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard_module, "LOOKUP_RETRY_S", 0.0)
    counted_once(tmp_path, {0: 5})
    settings = Settings(data_dir=tmp_path, topic=TOPIC, partitions=2, bucket_ms=1000)
    consumer = FakeConsumer([0, 1])
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    consumer.offsets_error = KafkaTimeoutError("no answer")
    layer.pipeline.take(consumer.assignment())
    layer.guard.verify_log_starts()
    assert consumer.paused_partitions == {0} and layer.guard.unverified == {0}
    assert not layer.guard.halted  # no answer is no evidence: paused, not halted
    consumer.offsets_error = None
    layer.guard.verify_log_starts()
    assert not consumer.paused_partitions and not layer.guard.unverified


def test_a_halt_makes_readyz_unhealthy_but_the_watchdog_does_not_restart() -> None:
    health, metrics, stop = Health(unhealthy_after_s=0.2), SpeedMetrics(), threading.Event()
    health.halt(0, "records [5, 8) expired before they were counted")
    exits: list[int] = []
    dog = Watchdog(health, metrics, exit_after_s=0.3, stop=stop, hard_exit=exits.append)
    dog.start()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # the loop keeps confirming its other partitions
        health.observe({1: 3}, {0: 50, 1: 3}, [0, 1])
        time.sleep(0.1)
    dog.halt()
    dog.join(5)
    assert not dog.tripped.is_set() and not stop.is_set() and exits == []
    assert metrics.registry.get_sample_value("speed_healthy") == 0
    body = health.report().as_json()
    assert body["status"] == "halted"
    assert body["reason"] == "partition 0: records [5, 8) expired before they were counted"


def test_reset_moves_both_cursors_and_lifts_the_halt(tmp_path: Path) -> None:
    counted_once(tmp_path, {0: 5})
    layer = new_layer(tmp_path)
    poll_and_settle(layer, [event_record(0, 0, "new", NOW_MS + 5000)])
    sealed = Layout(tmp_path).read_progress(0)
    assert sealed is not None and layer.store.load_halts().keys() == {0}

    starts, ends = {0: 0, 1: 0}, {0: 3, 1: 0}
    targets = targets_for([0, 1], starts, ends, Target.BEGINNING)
    changes = apply_reset(layer.store, Layout(tmp_path), targets)

    assert [c.describe() for c in changes] == [
        "partition 0: stored 5 → 0, landed 5 → 0",
        "partition 1: stored none → 0, landed none → 0",
    ]
    assert layer.store.load_offsets() == {0: 0, 1: 0}
    assert layer.store.load_halts() == {}
    layout = Layout(tmp_path)
    assert layout.read_progress(0) == PartitionProgress(0, 0, sealed.sealed_through_ms)
    assert layout.read_progress(1) == PartitionProgress(1, 0, 0)
    # The next process reads the new log from the beginning and counts it.
    successor = new_layer(tmp_path)
    assert not successor.guard.halted and successor.guard.sought == {0: 0, 1: 0}
    records = [
        event_record(0, o, "new", NOW_MS + 5000 + o, transaction_id=f"new-{o}") for o in range(3)
    ]
    assert poll_and_settle(successor, records) == 3
    assert not successor.guard.halted


def test_reset_targets_follow_the_log_and_refuse_an_offset_outside_it() -> None:
    starts, ends = {0: 2, 1: 0}, {0: 9, 1: 4}
    assert targets_for([0, 1], starts, ends, Target.END) == {0: 9, 1: 4}
    assert targets_for([0], starts, ends, Target.OFFSET, 7) == {0: 7}
    with pytest.raises(ResetRefused, match=r"partition\(s\) 1: \[0, 4\]"):
        targets_for([0, 1], starts, ends, Target.OFFSET, 7)


def test_status_shows_a_halted_speed_process(monkeypatch: pytest.MonkeyPatch) -> None:
    report = {"status": "halted", "reason": "partition 0: records [5, 8) expired"}
    monkeypatch.setattr(platform, "speed_health", lambda settings, instance: report)
    cell = platform._health(Settings(), "speed-0", None)
    assert cell == "HALTED: partition 0: records [5, 8) expired"
