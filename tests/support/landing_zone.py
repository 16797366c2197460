"""A generated landing zone for the batch job's tests, with no broker.

Copies of TransactionIDs inside and outside the dedup horizon D (also chains: a copy 1.5·D
after a kept one is kept, one 0.5·D after that is not), copies in other partitions, timestamp
ties across partitions, timestamps out of order across partitions, and a crash replay (a
landing file overlapping another), written as landing files of random sizes.
"""

from __future__ import annotations

import random
from typing import Any

from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.landing_files import write_landing_file
from lambda_contracts.layout import Layout

Row = dict[str, Any]
DAY_MS = 86_400_000


def copy_gaps(rng: random.Random, dedup_ms: int) -> list[int]:
    """Gaps between successive copies of one id, around the horizon and on it."""
    fixed = [
        [],
        [0],  # same millisecond
        [dedup_ms],  # exactly D: still a duplicate
        [dedup_ms + 1],  # just outside: a new event
        [dedup_ms * 3 // 2, dedup_ms // 2],  # chain: kept, then a duplicate of the second
        [dedup_ms // 2, dedup_ms // 2, dedup_ms // 2],  # within D of the last seen, not kept
    ]
    return rng.choice([*fixed, [rng.randint(0, 2 * dedup_ms) for _ in range(rng.randint(1, 4))]])


def generate(
    rng: random.Random,
    *,
    start_ts: int,
    bucket_ms: int,
    dedup_ms: int,
    partitions: int,
    ids: int = 120,
    buckets: int = 8,
    created: str = "hours-before",
) -> dict[int, list[Row]]:
    """{partition: rows in offset order}; per partition, Kafka timestamps never go back.

    First copies fall in ``buckets`` buckets from ``start_ts``. ``created``: "hours-before"
    puts CreatedTime up to 3 h before ``start_ts``; "mostly-on-time" puts it just before the
    Kafka time, with 3 % of events late by up to 3 days (other event-time days)."""
    planned: list[tuple[int, int, Row]] = []  # (kafka_ts, partition, row without offset)
    for n in range(ids):
        home = n % partitions
        ts = start_ts + rng.randint(0, buckets * bucket_ms - 1)
        for copy, gap in enumerate([0, *copy_gaps(rng, dedup_ms)]):
            ts += gap
            # Mostly the home partition (the Kafka key); sometimes another one, which only
            # the batch can order against the others.
            partition = home if rng.random() < 0.8 else rng.randrange(partitions)
            event = {
                "transaction_id": f"t{n}",
                "created_time": created_time(rng, start_ts, ts, created),
                "source_account_id": f"acct{home}",
                "target_account_id": "z",
                "amount_cents": rng.randint(1, 10_000) + copy,  # conflicting copies differ
            }
            planned.append((ts, partition, event))
    logs: dict[int, list[Row]] = {p: [] for p in range(partitions)}
    for ts, partition, event in sorted(planned, key=lambda p: (p[0], p[1])):
        log = logs[partition]
        log.append(event | {"kafka_partition": partition, "kafka_offset": len(log), "kafka_ts": ts})
    return logs


def created_time(rng: random.Random, start_ts: int, kafka_ts: int, mode: str) -> int:
    if mode == "hours-before":
        return start_ts - rng.randint(0, 3 * 3600_000)
    late = rng.randint(DAY_MS // 2, 3 * DAY_MS) if rng.random() < 0.03 else 0
    return kafka_ts - rng.randint(0, 5_000) - late


def land(layout: Layout, logs: dict[int, list[Row]], rng: random.Random, bucket_ms: int) -> int:
    """Write the logs as landing files of random sizes per bucket, plus one crash replay
    (a file overlapping the previous one); return how many records were landed twice."""
    replays = 0
    for partition, log in logs.items():
        by_bucket: dict[int, list[Row]] = {}
        for row in log:
            by_bucket.setdefault(ingest_bucket(row["kafka_ts"], bucket_ms), []).append(row)
        for bucket, rows in by_bucket.items():
            start = 0
            while start < len(rows):
                stop = start + rng.randint(1, 6)
                write_landing_file(layout, bucket, partition, rows[start:stop])
                start = stop
        if not replays:
            replays = land_a_replay(layout, log, bucket_ms)
    return replays


def land_a_replay(layout: Layout, log: list[Row], bucket_ms: int) -> int:
    """Land two or three neighbouring records of one bucket again in a new, overlapping file
    (as a speed process does after a crash); return how many, or 0 if none fits."""
    for first in range(len(log) - 1):
        twins = log[first : first + 3]
        bucket = ingest_bucket(twins[0]["kafka_ts"], bucket_ms)
        twins = [r for r in twins if ingest_bucket(r["kafka_ts"], bucket_ms) == bucket]
        partition, offsets = twins[0]["kafka_partition"], [r["kafka_offset"] for r in twins]
        target = layout.landing_key(bucket, partition, offsets[0], offsets[-1])
        if len(twins) > 1 and not layout.store.exists(target):
            write_landing_file(layout, bucket, partition, twins)
            return len(twins)
    return 0
