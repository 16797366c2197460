"""A record moved out of a sealed bucket keeps its bucket when it is counted again after a crash.

A record stamped below its partition's seal is landed and counted in the first open bucket
(``speed_layer/batcher.py``). After a crash between its landing and its store transaction it
is replayed for the store alone, by when the seal may have moved further: the store must count
it in the bucket the landing zone holds it in. With its raw Kafka stamp it fell in a sealed
bucket, below a published horizon and not yet in any batch: missing from every answer until
a batch run passed its landed bucket. The oracle reads the landing files' own stamps.
"""

from __future__ import annotations

from pathlib import Path

from lambda_contracts.layout import Layout, PartitionProgress
from speed_layer.batcher import Batcher
from speed_layer.landing import LandingWriter
from speed_layer.metrics import SpeedMetrics
from tests.support.blocks import rows_of
from tests.support.fakes import FakeDLQ, event_record
from tests.support.pipeline import landed_rows

BUCKET = 1000


def writer(layout: Layout) -> LandingWriter:
    return LandingWriter(layout, BUCKET, flush_ms=60_000, flush_records=10**6, grace_ms=100)


def test_a_late_record_replayed_for_the_store_keeps_its_landed_bucket(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.write_progress(PartitionProgress(0, next_offset=0, sealed_through_ms=5_000))
    late = [event_record(0, 0, "a", 1_500), event_record(0, 1, "a", 2_700)]
    on_time = [event_record(0, 2, "a", 5_200)]
    records = late + on_time

    first = writer(layout)
    assert first.assign(0) == 0
    batch = Batcher(first, FakeDLQ(), SpeedMetrics()).cut(0, records, None)
    assert batch is not None
    first.flush(0)
    first.close()
    landed = {r["kafka_offset"]: r["kafka_ts"] for r in landed_rows(layout)}
    assert landed == {0: 5_000, 1: 5_000, 2: 5_200}  # moved to the open bucket, once

    # The process died before its store transaction; meanwhile the partition sealed further.
    layout.write_progress(PartitionProgress(0, next_offset=3, sealed_through_ms=9_000))
    second = writer(layout)
    assert second.assign(0) == 3
    replay = Batcher(second, FakeDLQ(), SpeedMetrics()).cut(0, records, None)
    assert replay is not None
    counted = {r["kafka_offset"]: r["kafka_ts"] for r in rows_of(replay.rows)}
    assert counted == landed
    assert replay.next_offset == 3
    second.close()
