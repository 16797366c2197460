"""The speed layer under broker trouble: never fatal when transient, never stuck silently.

Each test runs on a private broker (it is frozen on purpose) while the adversarial stream
flows, and ends with the exact answers: aggregates equal the acknowledged events, every valid
event landed once.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.keeper import Keeper, read_record
from infra.local_broker import Broker, start_broker
from infra.services import speed_health, speed_service
from infra.supervisor import Supervisor
from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from speed_layer.health import EXIT_STALLED
from tests.support import ports
from tests.support.pipeline import (
    SpeedProcess,
    assert_landing_holds_every_valid_event_once,
    env_for,
    expected_views,
    free_port,
    mixed_stream,
    read_truth,
    speed_metric,
    speed_views,
    start_producer,
    wait_caught_up,
    wait_until,
)
from tests.support.topic_settings import fresh_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def frozen_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-faults"), *ports.FAULT_BROKER)
    try:
        yield broker
    finally:
        _signal_broker(broker, signal.SIGCONT)  # never leave it stopped
        broker.stop()


def _signal_broker(broker: Broker, sig: signal.Signals) -> None:
    pid = broker.supervisor.pid("kafka")
    if pid:
        os.killpg(pid, sig)


def _settings(broker: Broker, data_dir: Path, **overrides: object) -> Settings:
    """Fresh topics, with a metrics port of their own (the tests read health over HTTP)."""
    return fresh_settings(broker, data_dir, speed_metrics_port=free_port(), **overrides)


def _freeze(broker: Broker, seconds: float, during: threading.Event | None = None) -> None:
    """SIGSTOP the broker (a long GC pause, a stalled disk), then SIGCONT."""
    _signal_broker(broker, signal.SIGSTOP)
    try:
        if during is not None:
            during.set()
        time.sleep(seconds)
    finally:
        _signal_broker(broker, signal.SIGCONT)


def _health_status(settings: Settings) -> str | None:
    report = speed_health(settings, 0)
    return None if report is None else str(report.get("status"))


def test_broker_frozen_45s_mid_stream_the_process_rides_it_out_exactly(
    frozen_broker: Broker, tmp_path: Path
) -> None:
    # Unhealthy after 10 s without progress, but no exit before 120 s: a 45 s freeze must be
    # survived in-process, through retries, and reported while it lasts.
    settings = _settings(frozen_broker, tmp_path / "data", speed_unhealthy_after_s=10)
    truth_file = tmp_path / "truth.jsonl"
    speed = SpeedProcess(settings, metrics=True).start()
    engine = make_engine(settings.speed_store_url)
    producer = start_producer(settings, truth_file, "--count", "24000", *mixed_stream(400, 80))
    wait_until(lambda: _health_status(settings) == "ok", 60, "the speed layer to be healthy")
    time.sleep(10)

    seen: list[str | None] = []
    sampler_stop = threading.Event()

    def sample() -> None:
        while not sampler_stop.wait(1.0):
            seen.append(_health_status(settings))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _freeze(frozen_broker, 45)
    wait_until(lambda: _health_status(settings) == "ok", 120, "the speed layer to recover")
    sampler_stop.set()
    sampler.join()

    assert "stalled" in seen, f"the freeze was never reported unhealthy: {seen}"
    assert speed_metric(settings, "speed_kafka_errors_total") > 0, "no Kafka error was retried"
    assert producer.wait(300) == 0
    wait_caught_up(settings, engine, timeout=240)
    assert speed.alive(), "a transient broker freeze must not end the process"
    truth = read_truth(truth_file)
    assert speed_views(engine) == expected_views(truth)
    assert speed.terminate() == 0
    assert_landing_holds_every_valid_event_once(settings, truth)


def test_a_stalled_speed_layer_exits_is_restarted_and_stays_exact(
    frozen_broker: Broker, tmp_path: Path
) -> None:
    # Tight bounds: unhealthy after 3 s, exit after 8 s without progress.
    settings = _settings(
        frozen_broker, tmp_path / "data", speed_unhealthy_after_s=3, speed_exit_after_s=8
    )
    assert settings.logs_dir is not None
    supervisor = Supervisor(tmp_path / "run", settings.logs_dir)
    service = dataclasses.replace(speed_service(settings, 0), env=env_for(settings))
    keeper = Keeper(supervisor, [service], backoff_max_s=2)
    stop_keeper = threading.Event()
    keeper_thread = threading.Thread(target=keeper.run, args=(stop_keeper,), daemon=True)
    truth_file = tmp_path / "truth.jsonl"
    engine = make_engine(settings.speed_store_url)
    try:
        supervisor.start(service)
        keeper_thread.start()
        first_pid = supervisor.pid(service.name)
        producer = start_producer(settings, truth_file, "--count", "16000", *mixed_stream(400, 80))
        time.sleep(8)
        frozen = threading.Event()
        freezer = threading.Thread(target=_freeze, args=(frozen_broker, 35, frozen))
        freezer.start()
        frozen.wait(10)
        wait_until(lambda: _health_status(settings) == "stalled", 20, "an unhealthy report")
        freezer.join()

        assert producer.wait(300) == 0
        wait_caught_up(settings, engine, timeout=240)
        record = read_record(supervisor, service.name)
        assert record.restarts >= 1, "the stalled process was not restarted"
        assert supervisor.pid(service.name) not in (None, first_pid)
        log = supervisor.log_file(service.name).read_text()
        assert "speed layer stalled" in log and f'"exit_code": {EXIT_STALLED}' in log
        truth = read_truth(truth_file)
        assert speed_views(engine) == expected_views(truth)
        stop_keeper.set()
        keeper_thread.join(10)
        supervisor.stop(service.name)  # SIGTERM lands what is still buffered
        assert_landing_holds_every_valid_event_once(settings, truth)
    finally:
        stop_keeper.set()
        if keeper_thread.is_alive():
            keeper_thread.join(10)
        supervisor.stop(service.name)
