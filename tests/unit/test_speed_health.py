"""The speed layer's self-watch: when is a process stalled, and what the watchdog does then."""

from __future__ import annotations

import threading
import time

from speed_layer.health import EXIT_STALLED, Health, Watchdog
from speed_layer.metrics import SpeedMetrics
from speed_layer.progress import ProgressWatch


def test_caught_up_is_never_stalled() -> None:
    watch = ProgressWatch(started_at=0)
    for t in range(0, 600, 5):
        watch.observe(t, {0: 10, 1: None}, {0: 10, 1: 0})
    assert watch.stalled_for(597) == 2  # only the time since the last look
    assert watch.lag == 0


def test_lag_that_does_not_move_is_a_stall_from_the_last_progress() -> None:
    watch = ProgressWatch(started_at=0)
    watch.observe(0, {0: 0}, {0: 100})
    watch.observe(1, {0: 40}, {0: 100})  # progress at t=1
    for t in range(2, 50):
        watch.observe(t, {0: 40}, {0: 100 + t})
    assert watch.stalled_for(50) == 49
    assert watch.lag == 100 + 49 - 40


def test_one_stuck_partition_is_a_stall_even_if_others_advance() -> None:
    watch = ProgressWatch(started_at=0)
    for t in range(0, 30):
        watch.observe(t, {0: t, 1: 5}, {0: 1000, 1: 9})
    assert watch.stalled_for(30) == 30


def test_no_answer_from_the_broker_runs_the_clock() -> None:
    watch = ProgressWatch(started_at=0)
    assert watch.stalled_for(12) == 12  # never confirmed since start
    watch.observe(20, {0: 3}, {0: 3})
    # No observation after t=20 (look-ups fail, or the loop is blocked).
    assert watch.stalled_for(65) == 45


def test_new_partitions_get_a_fresh_start_and_revoked_ones_are_forgotten() -> None:
    watch = ProgressWatch(started_at=0)
    watch.observe(0, {0: 0}, {0: 50})
    watch.observe(40, {1: 0}, {1: 50})  # partition 0 revoked, 1 assigned
    assert watch.stalled_for(41) == 1


def test_health_report_and_watchdog_trip_after_the_exit_bound() -> None:
    health = Health(unhealthy_after_s=0.5)
    health.observe({0: 0}, {0: 10}, [0])
    assert health.report().healthy
    time.sleep(0.6)
    report = health.report()
    assert not report.healthy and report.lag == 10 and report.partitions == [0]

    stop = threading.Event()
    exits: list[int] = []
    metrics = SpeedMetrics()
    dog = Watchdog(
        health, metrics, exit_after_s=1.0, stop=stop, grace_s=0.5, hard_exit=exits.append
    )
    dog.start()
    dog.join(10)
    # The loop never stopped (nobody halted the watchdog): the stop was asked, then forced.
    assert stop.is_set() and dog.tripped.is_set()
    assert exits == [EXIT_STALLED]
    assert metrics.registry.get_sample_value("speed_healthy") == 0


def test_watchdog_gives_the_loop_its_grace_to_stop_cleanly() -> None:
    health = Health(unhealthy_after_s=0.1)
    stop = threading.Event()
    exits: list[int] = []
    dog = Watchdog(
        health, SpeedMetrics(), exit_after_s=0.2, stop=stop, grace_s=5, hard_exit=exits.append
    )
    dog.start()
    assert stop.wait(5)
    dog.halt()  # the loop stopped in time
    dog.join(5)
    assert exits == [] and dog.tripped.is_set()
