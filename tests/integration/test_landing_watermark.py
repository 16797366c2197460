"""The landing watermark never seals a bucket early — idle partitions, a stalled process — and
still advances when partitions are idle."""

from __future__ import annotations

import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout
from producer.cli import make_producer
from tests.support.pipeline import SpeedProcess, landed_rows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 2000


def snapshot(layout: Layout, partitions: int) -> tuple[int, dict[int, int]]:
    """(watermark, next landed offset per partition) from one read of the progress files."""
    progress = [layout.read_progress(p) for p in range(partitions)]
    if any(p is None for p in progress):
        return 0, {}
    low = min(p.sealed_through_ms for p in progress)
    return low - low % BUCKET_MS, {p.partition: p.next_offset for p in progress}


def test_watermark_is_never_early_and_advances_past_idle_partitions(
    make_settings, tmp_path: Path
) -> None:
    settings = make_settings(
        bucket_ms=BUCKET_MS, landing_flush_ms=200, idle_seal_grace_ms=200, partitions=4
    )
    layout = Layout.of(settings)
    speeds = [SpeedProcess(settings, i).start() for i in range(2)]
    sent: list[tuple[int, int, int]] = []  # partition, offset, timestamp
    done = threading.Event()

    def produce() -> None:
        producer = make_producer(settings.kafka_client_config)
        futures = []
        for i in range(2400):  # ~12 s at 200/s, to partitions 0 and 1 only: 2 and 3 stay idle
            event = Transaction(
                TransactionID=f"w{i}",
                CreatedTime=int(time.time() * 1000),
                SourceAccountID=f"a{i % 7}",
                TargetAccountID="t",
                Amount=Decimal("1.25"),
            )
            futures.append(
                producer.send(
                    settings.topic, value=event.to_json_bytes(), key=event.key, partition=i % 2
                )
            )
            time.sleep(0.005)
        producer.flush()
        for f in futures:
            meta = f.get(30)
            sent.append((meta.partition, meta.offset, meta.timestamp))
        producer.close()
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    samples = []
    started = time.monotonic()
    stalled = False
    while not done.is_set():
        samples.append(snapshot(layout, settings.partitions))
        elapsed = time.monotonic() - started
        if not stalled and elapsed > 4:
            os.kill(speeds[1].proc.pid, signal.SIGSTOP)  # a slow process: its partitions stall
            stalled = True
        if stalled and elapsed > 8 and speeds[1].alive():
            os.kill(speeds[1].proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    os.kill(speeds[1].proc.pid, signal.SIGCONT)
    producer.join()

    last_bucket_end = max(ts for _, _, ts in sent) // BUCKET_MS * BUCKET_MS + BUCKET_MS
    wait_until(
        lambda: snapshot(layout, settings.partitions)[0] >= last_bucket_end,
        60,
        "the watermark to pass the last bucket while two partitions are idle",
    )
    samples.append(snapshot(layout, settings.partitions))

    advanced = [w for w, _ in samples if w > 0]
    assert advanced, "the watermark never advanced"
    for watermark, next_offsets in samples:
        for partition, offset, ts in sent:
            if ts < watermark:
                assert offset < next_offsets[partition], (
                    f"bucket sealed early: record {partition}/{offset} at {ts} < {watermark}"
                )
    for speed in speeds:
        assert speed.terminate() == 0
    landed = {(r["kafka_partition"], r["kafka_offset"]) for r in landed_rows(layout)}
    assert landed == {(p, o) for p, o, _ in sent}
