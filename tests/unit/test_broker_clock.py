"""Idle partitions are sealed by the brokers' clock, never by the speed host's.

The speed layer's loop runs with a stand-in consumer whose records carry broker timestamps an
hour behind or ahead of this host's wall clock; sealing must follow the broker either way.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lambda_contracts.layout import Layout, PartitionProgress
from lambda_contracts.settings import Settings
from speed_layer.broker_clock import RATE_DISCOUNT, BrokerClock
from speed_layer.consumer import SpeedLayer
from speed_layer.metrics import SpeedMetrics
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record, poll_and_settle

HOUR_MS = 3_600_000
GRACE_MS = 200


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clock_is_unknown_before_any_observation_then_a_lower_bound() -> None:
    mono = FakeMonotonic()
    clock = BrokerClock(mono)
    assert clock.now_ms() is None
    clock.observe(50_000)
    assert clock.now_ms() == 50_000
    mono.now += 10  # ten seconds later, by the monotonic clock
    assert clock.now_ms() == 50_000 + int(10_000 * (1 - RATE_DISCOUNT))
    assert clock.now_ms() < 60_000  # never ahead of the broker, even with slightly fast rates
    clock.observe(55_000)  # an older stamp learned late: the bound it gives is lower
    assert clock.now_ms() == 50_000 + int(10_000 * (1 - RATE_DISCOUNT))
    clock.observe(70_000)  # a newer stamp raises the bound
    assert clock.now_ms() == 70_000


def speed_layer(tmp_path: Path, partitions: list[int], total: int = 2) -> SpeedLayer:
    settings = Settings(
        data_dir=tmp_path, topic=TOPIC, partitions=total, idle_seal_grace_ms=GRACE_MS
    )
    consumer = FakeConsumer(partitions)
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics())  # type: ignore[arg-type]
    layer.pipeline.take(consumer.assignment())
    return layer


def sealed(tmp_path: Path, partition: int) -> int:
    progress = Layout(tmp_path).read_progress(partition)
    assert progress is not None
    return progress.sealed_through_ms


@pytest.mark.parametrize("skew_ms", [-HOUR_MS, HOUR_MS], ids=["broker-behind", "broker-ahead"])
def test_idle_partition_is_sealed_by_broker_time(tmp_path: Path, skew_ms: int) -> None:
    """Partition 0 is active, partition 1 idle; the broker's clock is off by ``skew_ms``."""
    layer = speed_layer(tmp_path, [0, 1])
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    started = time.monotonic()
    broker_ms = int(time.time() * 1000) + skew_ms  # the broker's clock at the start
    records = [event_record(0, o, "a", broker_ms) for o in range(3)]
    poll_and_settle(layer, records)
    consumer.ends = {0: 3, 1: 0}
    layer.landing.flush(0)
    layer.housekeeping()
    layer.landing.wait()  # the landing writes run behind the loop
    broker_now_ms = broker_ms + int((time.monotonic() - started) * 1000)

    idle = sealed(tmp_path, 1)
    # A record appended to the idle partition now is stamped by the broker's clock, now: it
    # must not fall into the sealed part...
    assert idle <= broker_now_ms - GRACE_MS
    # ...and sealing follows the broker, also when the broker is ahead of this host.
    assert idle >= broker_ms - GRACE_MS


def test_a_process_owning_only_idle_partitions_learns_broker_time_from_landing_progress(
    tmp_path: Path,
) -> None:
    broker_ms = int(time.time() * 1000) - HOUR_MS  # an hour behind this host
    # Another process landed partition 0 up to a record stamped at broker_ms.
    Layout(tmp_path).write_progress(PartitionProgress(0, 10, broker_ms))
    layer = speed_layer(tmp_path, [1])
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    consumer.ends = {1: 0}
    layer.housekeeping()
    layer.landing.wait()  # the landing writes run behind the loop
    assert broker_ms - GRACE_MS <= sealed(tmp_path, 1) <= broker_ms


def test_nothing_is_sealed_by_time_before_any_broker_time_is_known(tmp_path: Path) -> None:
    layer = speed_layer(tmp_path, [0, 1])
    layer.housekeeping()
    layer.landing.wait()  # the landing writes run behind the loop
    assert Layout(tmp_path).read_progress(1) is None


def test_a_commit_marker_does_not_hold_back_the_seal(tmp_path: Path) -> None:
    """Records 0-1 of a transaction, its commit marker at 2: the consumer's position is 3."""
    layer = speed_layer(tmp_path, [0])
    consumer: FakeConsumer = layer.consumer  # type: ignore[assignment]
    broker_ms = int(time.time() * 1000)
    poll_and_settle(layer, [event_record(0, o, "a", broker_ms) for o in range(2)])
    layer.landing.flush(0)
    # Another process has landed partition 1 through a later broker time.
    Layout(tmp_path).write_progress(PartitionProgress(1, 10, broker_ms + 5_000))
    consumer.positions[0] = 3  # poll() moved past the marker
    consumer.ends = {0: 3}
    layer.housekeeping()
    layer.landing.wait()  # the landing writes run behind the loop
    assert sealed(tmp_path, 0) >= broker_ms + 5_000 - GRACE_MS
