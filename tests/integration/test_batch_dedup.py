"""The batch job's dedup on real Spark (local[2]) against the independent oracle.

No broker: a generated landing zone with 1-minute buckets and a 90 s dedup horizon holds
copies of TransactionIDs inside and outside the horizon (also chains: a copy 1.5·D after a
kept one is kept, one 0.5·D after that is not), copies in other partitions, timestamp ties
across partitions, timestamps out of order across partitions, and a crash replay (a landing
file overlapping another). One Spark session runs the real job; the views and the manifest's
counts must be what the oracle says.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_layer import spark_job
from batch_layer.submit import spark_conf, spark_env
from batch_layer.validate import validate_version
from batch_layer.versions import read_manifest
from infra.s3_server import S3Server
from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.landing_files import read_landing_file, write_landing_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.oracle import kept_rows, oracle_views
from tests.support.pipeline import batch_views

pytestmark = [pytest.mark.slow]

BUCKET_MS = 60_000
DEDUP_MS = 90_000
PARTITIONS = 3
START_TS = 1_700_000_040_000  # on a bucket boundary
SEED = 20240611

Row = dict[str, Any]


def copy_gaps(rng: random.Random) -> list[int]:
    """Gaps between successive copies of one id, around the horizon and on it."""
    fixed = [
        [],
        [0],  # same millisecond
        [DEDUP_MS],  # exactly D: still a duplicate
        [DEDUP_MS + 1],  # just outside: a new event
        [DEDUP_MS * 3 // 2, DEDUP_MS // 2],  # chain: kept, then a duplicate of the second
        [DEDUP_MS // 2, DEDUP_MS // 2, DEDUP_MS // 2],  # within D of the last seen, not kept
    ]
    return rng.choice([*fixed, [rng.randint(0, 2 * DEDUP_MS) for _ in range(rng.randint(1, 4))]])


def generate(rng: random.Random, ids: int = 120) -> dict[int, list[Row]]:
    """{partition: rows in offset order}; per partition, Kafka timestamps never go back."""
    planned: list[tuple[int, int, Row]] = []  # (kafka_ts, partition, row without offset)
    for n in range(ids):
        home = n % PARTITIONS
        ts = START_TS + rng.randint(0, 8 * BUCKET_MS)
        for copy, gap in enumerate([0, *copy_gaps(rng)]):
            ts += gap
            # Mostly the home partition (the Kafka key); sometimes another one, which only
            # the batch can order against the others.
            partition = home if rng.random() < 0.8 else rng.randrange(PARTITIONS)
            event = {
                "transaction_id": f"t{n}",
                "created_time": START_TS - rng.randint(0, 3 * 3600_000),
                "source_account_id": f"acct{home}",
                "target_account_id": "z",
                "amount_cents": rng.randint(1, 10_000) + copy,  # conflicting copies differ
            }
            planned.append((ts, partition, event))
    logs: dict[int, list[Row]] = {p: [] for p in range(PARTITIONS)}
    for ts, partition, event in sorted(planned, key=lambda p: (p[0], p[1])):
        log = logs[partition]
        log.append(event | {"kafka_partition": partition, "kafka_offset": len(log), "kafka_ts": ts})
    return logs


def land(layout: Layout, logs: dict[int, list[Row]], rng: random.Random) -> int:
    """Write the logs as landing files of random sizes per bucket, plus one crash replay
    (a file overlapping the previous one); return how many records were landed twice."""
    replays = 0
    for partition, log in logs.items():
        by_bucket: dict[int, list[Row]] = {}
        for row in log:
            by_bucket.setdefault(ingest_bucket(row["kafka_ts"], BUCKET_MS), []).append(row)
        for bucket, rows in by_bucket.items():
            start = 0
            while start < len(rows):
                stop = start + rng.randint(1, 6)
                write_landing_file(layout, bucket, partition, rows[start:stop])
                start = stop
        if not replays:
            replays = land_a_replay(layout, log)
    return replays


def land_a_replay(layout: Layout, log: list[Row]) -> int:
    """Land two or three neighbouring records of one bucket again in a new, overlapping file
    (as a speed process does after a crash); return how many, or 0 if none fits."""
    for first in range(len(log) - 1):
        twins = log[first : first + 3]
        bucket = ingest_bucket(twins[0]["kafka_ts"], BUCKET_MS)
        twins = [r for r in twins if ingest_bucket(r["kafka_ts"], BUCKET_MS) == bucket]
        partition, offsets = twins[0]["kafka_partition"], [r["kafka_offset"] for r in twins]
        target = layout.landing_key(bucket, partition, offsets[0], offsets[-1])
        if len(twins) > 1 and not layout.store.exists(target):
            write_landing_file(layout, bucket, partition, twins)
            return len(twins)
    return 0


@pytest.fixture(scope="module")
def s3_settings(s3_server: S3Server) -> Iterator[dict[str, Any]]:
    """Settings that put the master dataset under a fresh prefix of the test S3 server; the
    credentials go where every AWS client looks for them, the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
        mp.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
        yield {
            "storage_url": f"s3://{s3_server.buckets[0]}/dedup-{uuid.uuid4().hex[:8]}",
            "s3_endpoint": s3_server.endpoint,
        }


@pytest.fixture(scope="module")
def spark_session(s3_settings: dict[str, Any]) -> Iterator[None]:
    """One local[2] session for the module, able to read s3a:// from the test S3 server;
    the job's getOrCreate() picks it up."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    # py4j logs its gateway's close at INFO from a finalizer at interpreter exit, after
    # pytest closed the captured streams: keep that out of the run's last lines.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in spark_env(Settings()).items():
            mp.setenv(name, value)
        builder = pyspark_sql.SparkSession.builder.master("local[2]").appName("test-dedup")
        for key, value in spark_conf(Settings(**s3_settings)).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        yield
        session.stop()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_batch_dedup_equals_the_oracle_at_a_small_horizon(
    spark_session: None, s3_settings: dict[str, Any], tmp_path: Path, backend: str
) -> None:
    rng = random.Random(SEED)
    settings = Settings(
        data_dir=tmp_path / "data",
        bucket_ms=BUCKET_MS,
        dedup_horizon_ms=DEDUP_MS,
        partitions=PARTITIONS,
        **(s3_settings if backend == "s3" else {}),
    )
    layout = Layout.of(settings)
    logs = generate(rng)
    replays = land(layout, logs, rng)
    rows = [row for log in logs.values() for row in log]
    newest_bucket = max(ingest_bucket(r["kafka_ts"], BUCKET_MS) for r in rows)
    horizon = newest_bucket - 2 * BUCKET_MS  # some landed buckets stay above the horizon
    below = [r for r in rows if r["kafka_ts"] < horizon]
    kept = kept_rows(below, DEDUP_MS)
    # The data really exercises the rule: copies dropped, and copies of one id kept twice.
    assert len(below) > len(kept) > len({r["transaction_id"] for r in kept}) and replays

    spark_job.run(settings, horizon, "v1", "test")

    assert batch_views(layout, "v1") == oracle_views(below, DEDUP_MS)
    manifest = read_manifest(layout, "v1")
    assert manifest["events"] == len(kept)
    # A replayed file whose offsets lie inside another file is superseded and not read at all;
    # the replays removed are the rows read twice from the files actually listed.
    listed = [
        (r["kafka_partition"], r["kafka_offset"])
        for k in layout.landing_files(below_ms=horizon)
        for r in read_landing_file(layout, k, ["kafka_partition", "kafka_offset"]).to_pylist()
    ]
    assert manifest["replays_removed"] == len(listed) - len(set(listed))
    assert manifest["duplicates_removed"] == len(below) - len(kept)
    assert validate_version(layout, "v1")["events"] == len(kept)
    # The job's intermediate output is gone; the version is its views and its manifest.
    assert not layout.store.list(f"{layout.version_prefix('v1')}{spark_job.DEDUPLICATED}/")
    if backend == "s3":  # Spark read and wrote the objects over s3a; nothing is on local disk
        assert all(name.startswith("s3a://") for name in manifest["input_files"])
        assert all(layout.store.exists(k) for ks in manifest["output_files"].values() for k in ks)
        assert not list((tmp_path / "data").rglob("*.parquet"))
