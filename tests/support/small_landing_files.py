"""Small landing files as the speed layer writes them (a file per flush, a replayed file), for
compaction's tests; and what a reader sees of them through the listing."""

from __future__ import annotations

from collections import Counter

from lambda_contracts.landing_files import read_landing_file, write_landing_file
from lambda_contracts.layout import Layout

BUCKET_MS = 60_000


def landed_row(partition: int, offset: int, ts: int) -> dict[str, object]:
    return {
        "transaction_id": f"t{partition}-{offset}",
        "created_time": ts - 5,
        "source_account_id": f"a{offset % 7}",
        "target_account_id": "b",
        "amount_cents": offset * 3,
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_ts": ts,
    }


def land_small_files(layout: Layout) -> list[tuple[int, int]]:
    """Two buckets x three partitions, written as the speed layer does: a small file per
    flush, plus one replayed (overlapping) file. Returns every (partition, offset) landed."""
    landed = []
    for partition in range(3):
        offset = 0
        for bucket in (0, BUCKET_MS):
            for _flush in range(5):
                rows = [landed_row(partition, offset + i, bucket + offset + i) for i in range(4)]
                write_landing_file(layout, bucket, partition, rows)
                landed += [(partition, offset + i) for i in range(4)]
                offset += 4
        # A crash replay re-landed part of the last flushes of the second bucket.
        replay = [landed_row(partition, o, BUCKET_MS + o) for o in range(offset - 6, offset)]
        write_landing_file(layout, BUCKET_MS, partition, replay)
    return landed


def read_listed(layout: Layout) -> Counter[tuple[int, int]]:
    """What a reader sees through the listing, counting every row it would read."""
    seen: Counter[tuple[int, int]] = Counter()
    for key in layout.landing_files():
        for row in read_landing_file(layout, key).to_pylist():
            assert row == landed_row(row["kafka_partition"], row["kafka_offset"], row["kafka_ts"])
            seen[(row["kafka_partition"], row["kafka_offset"])] += 1
    return seen
