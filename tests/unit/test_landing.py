"""Landing zone: file naming, progress, watermark, and the writer's sealing rules."""

from __future__ import annotations

from pathlib import Path

from lambda_contracts.landing_files import read_landing_file
from lambda_contracts.layout import Layout, PartitionProgress
from speed_layer.event_block import EventBlock
from speed_layer.landing import LandingWriter
from tests.support.blocks import block_of
from tests.support.landing_rows import BUCKET, landing_row
from tests.support.pipeline import landed_rows


def writer(where: Path | Layout, grace_ms: int = 100) -> LandingWriter:
    layout = where if isinstance(where, Layout) else Layout(where)
    return LandingWriter(layout, BUCKET, flush_ms=60_000, flush_records=10**6, grace_ms=grace_ms)


def seal(
    w: LandingWriter, ends: dict[int, int], positions: dict[int, int], **now: int | None
) -> None:
    """Seal as the loop does, then wait for the writes it queued (they run behind the loop)."""
    w.seal_caught_up(ends, positions, **now)
    w.wait()


def test_watermark_needs_every_partition(layout: Layout) -> None:
    assert layout.landing_watermark(partitions=2, bucket_ms=BUCKET) == 0
    layout.write_progress(PartitionProgress(0, 10, 5_500))
    assert layout.landing_watermark(partitions=2, bucket_ms=BUCKET) == 0  # partition 1 silent
    layout.write_progress(PartitionProgress(1, 3, 3_999))
    assert layout.landing_watermark(partitions=2, bucket_ms=BUCKET) == 3_000
    layout.write_progress(PartitionProgress(1, 4, 7_000))
    assert layout.landing_watermark(partitions=2, bucket_ms=BUCKET) == 5_000


def test_flush_writes_one_file_per_bucket_named_by_offsets(layout: Layout) -> None:
    w = writer(layout)
    assert w.assign(0) == 0
    rows = [landing_row(0, o, ts) for o, ts in [(0, 1_100), (1, 1_900), (2, 2_050), (3, 2_999)]]
    w.add_many(0, block_of(rows), 5)  # offset 4, an invalid record: consumed, not landed
    w.flush(0)
    keys = layout.landing_files()
    assert keys == ["landing/bucket=1000/p0-0-1.parquet", "landing/bucket=2000/p0-2-3.parquet"]
    assert read_landing_file(layout, keys[1]).column("kafka_offset").to_pylist() == [2, 3]
    progress = layout.read_progress(0)
    assert progress == PartitionProgress(0, next_offset=5, sealed_through_ms=2_999)


def test_replayed_offsets_are_not_landed_twice(layout: Layout) -> None:
    w = writer(layout)
    w.assign(0)
    w.add_many(0, block_of([landing_row(0, 0, 1_000)]), 1)
    w.flush(0)
    w2 = writer(layout)  # a restarted process
    assert w2.assign(0) == 1
    w2.add_many(0, block_of([landing_row(0, 0, 1_000)]), 1)  # replayed below the cursor: skipped
    w2.add_many(0, block_of([landing_row(0, 1, 1_200)]), 2)
    w2.flush(0)
    offsets = sorted(r["kafka_offset"] for r in landed_rows(layout))
    assert offsets == [0, 1]


def test_idle_partition_seals_only_when_nothing_is_unlanded(tmp_path: Path) -> None:
    w = writer(tmp_path, grace_ms=100)
    w.assign(0)
    w.add_many(0, block_of([landing_row(0, 0, 1_000)]), 1)
    # Caught up to offset 1, but the row is still only buffered: no seal.
    seal(w, {0: 1}, {0: 1}, broker_now_ms=10_000)
    assert Layout(tmp_path).read_progress(0) is None
    w.flush(0)
    # The broker has a record we have not consumed: no seal beyond what is landed.
    seal(w, {0: 2}, {0: 1}, broker_now_ms=10_000)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 1_000
    # Everything up to the end offset is landed: sealed to the broker time less the grace.
    seal(w, {0: 1}, {0: 1}, broker_now_ms=10_000)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 9_900
    # Sealing never goes backwards.
    seal(w, {0: 1}, {0: 1}, broker_now_ms=5_000)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 9_900
    # No broker time known: nothing is sealed by time.
    seal(w, {0: 1}, {0: 1}, broker_now_ms=None)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 9_900


def test_a_commit_marker_after_the_last_record_does_not_keep_a_partition_unsealed(
    tmp_path: Path,
) -> None:
    """A transaction's records at offsets 0-1, its commit marker at 2: the end offset is 3,
    the last record consumed is 1, the consumer's position is 3 (past the marker)."""
    w = writer(tmp_path, grace_ms=100)
    w.assign(0)
    w.add_many(0, block_of([landing_row(0, 0, 1_000), landing_row(0, 1, 1_001)]), 2)
    w.flush(0)
    seal(w, {0: 3}, {0: 3}, broker_now_ms=10_000)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 9_900
    # Records consumed but not yet landed still hold the seal back, whatever the position.
    w.add_many(0, EventBlock(), 4)  # offset 3, no valid event
    seal(w, {0: 4}, {0: 4}, broker_now_ms=20_000)
    assert Layout(tmp_path).read_progress(0).sealed_through_ms == 9_900


def test_unassigned_partition_is_not_sealed_by_anyone(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.assign(0)
    seal(w, {0: 0, 1: 0}, {0: 0, 1: 0}, broker_now_ms=50_000)
    layout = Layout(tmp_path)
    assert layout.read_progress(1) is None
    assert layout.landing_watermark(partitions=2, bucket_ms=BUCKET) == 0


def test_landing_listing_by_bucket_range(tmp_path: Path) -> None:
    """An increment lists its own buckets (and only those); every range gives the same keys a
    plain filter of the whole landing zone gives, whichever way the listing goes."""
    layout = Layout(tmp_path)
    buckets = [0, 60_000, 120_000, 600_000, 6_000_000]  # as text, 60000 sorts after 120000
    every: dict[int, list[str]] = {}
    for b in buckets:
        for p in (1, 0):
            key = layout.landing_key(b, p, 10 * p, 10 * p + 9)
            layout.store.put(key, b"x")
            every.setdefault(b, []).append(key)
    layout.store.put("landing/_progress/partition=0.json", b"{}")
    every = {b: sorted(keys) for b, keys in every.items()}
    assert layout.landed_buckets() == buckets
    for lo, hi in [(0, None), (60_000, 600_000), (600_000, 600_001), (120_000, None), (7, 8)]:
        expected = {b: ks for b, ks in every.items() if b >= lo and (hi is None or b < hi)}
        assert layout.landing_keys_by_bucket(lo, hi) == expected, (lo, hi)
