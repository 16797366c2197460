"""A full landing disk stalls the speed layer; it does not end it, and loses nothing.

The real loop (``SpeedLayer.run``) over a stand-in consumer that serves a fixed log, a real
SQLite store and a real landing zone whose writes fail with ENOSPC until the disk is freed.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

import speed_layer.landing as landing_module
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from speed_layer.consumer import SpeedLayer
from speed_layer.health import Health
from speed_layer.metrics import SpeedMetrics
from tests.support.fakes import TOPIC, FakeConsumer, FakeDLQ, event_record
from tests.support.pipeline import landed_rows

NOW_MS = 1_700_000_000_000
RECORDS = 10


class LogConsumer(FakeConsumer):
    """Serves partition 0's log from the current position, as ``poll`` does."""

    def __init__(self, log: list[Any]) -> None:
        super().__init__([0])
        self.log = log
        self.ends = {0: len(log)}

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        pass

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        position = self.positions.get(0, 0)
        pending = self.log[position : position + 3]
        if not pending:
            time.sleep(timeout_ms / 1000)
            return {}
        return self.deliver(pending)

    def commit_async(self, *args: Any, **kwargs: Any) -> None:
        pass

    def commit(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


def landed(tmp_path: Path) -> list[int]:
    return sorted(r["kafka_offset"] for r in landed_rows(Layout(tmp_path)))


def landed_next(tmp_path: Path) -> int:
    progress = Layout(tmp_path).read_progress(0)
    return progress.next_offset if progress else 0


def test_a_full_landing_disk_is_retried_until_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        data_dir=tmp_path, topic=TOPIC, partitions=1, bucket_ms=1000, landing_flush_ms=50
    )
    log = [event_record(0, o, f"a{o % 3}", NOW_MS + o) for o in range(RECORDS)]
    consumer = LogConsumer(log)
    layer = SpeedLayer(settings, consumer, FakeDLQ(), SpeedMetrics(), Health(30.0))  # type: ignore[arg-type]
    layer.pipeline.take({TopicPartition(TOPIC, 0)})

    disk_full = threading.Event()
    disk_full.set()
    write = landing_module.write_landing_table

    def full_disk_write(*args: Any, **kwargs: Any) -> Any:
        if disk_full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(landing_module, "write_landing_table", full_disk_write)
    stop = threading.Event()
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            layer.run(stop)
        except BaseException as exc:  # reported by the test
            failure.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        errors = "speed_landing_write_errors_total"
        while not layer.metrics.registry.get_sample_value(errors):
            assert thread.is_alive(), f"the loop ended on a full disk: {failure}"
            assert time.monotonic() < deadline, "no landing write was attempted"
            time.sleep(0.05)
        assert Layout(tmp_path).read_progress(0) is None  # nothing recorded as landed
        disk_full.clear()
        while landed_next(tmp_path) < RECORDS:
            assert thread.is_alive(), f"the loop ended: {failure}"
            assert time.monotonic() < deadline, "the landing zone never caught up"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert not failure and not thread.is_alive()
    assert landed(tmp_path) == list(range(RECORDS))  # each offset once, none lost
    assert layer.store.load_offsets()[0] == RECORDS
