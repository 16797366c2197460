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

from batch_layer import spark_dedup, spark_job
from batch_layer.catalog import list_versions, read_manifest
from batch_layer.compaction import compact
from batch_layer.submit import spark_conf, spark_env
from batch_layer.validate import validate_version
from batch_layer.versions import prune, publish, resume, rollback
from infra.s3_server import S3Server
from lambda_contracts.batch_files import view_dataset
from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.landing_files import read_landing_file
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS
from tests.support.landing_zone import generate, land
from tests.support.oracle import kept_rows, oracle_views
from tests.support.pipeline import batch_views

pytestmark = [pytest.mark.slow]

BUCKET_MS = 60_000
DEDUP_MS = 90_000
PARTITIONS = 3
START_TS = 1_700_000_040_000  # on a bucket boundary
SEED = 20240611

Row = dict[str, Any]


def landed_zone(
    tmp_path: Path, seed: int, storage: dict[str, Any], **shape: Any
) -> tuple[Settings, Layout, dict[int, list[Row]], int]:
    """Settings at this module's small horizon, and a generated landing zone written with
    them: (settings, layout, the logs by partition, how many records were landed twice)."""
    rng = random.Random(seed)
    settings = Settings(
        data_dir=tmp_path / "data",
        bucket_ms=BUCKET_MS,
        dedup_horizon_ms=DEDUP_MS,
        partitions=PARTITIONS,
        **storage,
    )
    layout = Layout.of(settings)
    logs = generate(
        rng,
        start_ts=START_TS,
        bucket_ms=BUCKET_MS,
        dedup_ms=DEDUP_MS,
        partitions=PARTITIONS,
        **shape,
    )
    return settings, layout, logs, land(layout, logs, rng, BUCKET_MS)


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
        builder = builder.config("spark.driver.memory", Settings().spark_driver_memory)
        for key, value in spark_conf(Settings(**s3_settings)).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        yield
        session.stop()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_batch_dedup_equals_the_oracle_at_a_small_horizon(
    spark_session: None, s3_settings: dict[str, Any], tmp_path: Path, backend: str
) -> None:
    settings, layout, logs, replays = landed_zone(
        tmp_path, SEED, s3_settings if backend == "s3" else {}
    )
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
    assert manifest.events == len(kept)
    # A replayed file whose offsets lie inside another file is superseded and not read at all;
    # the replays removed are the rows read twice from the files actually listed.
    listed = [
        (r["kafka_partition"], r["kafka_offset"])
        for k in layout.landing_files(below_ms=horizon)
        for r in read_landing_file(layout, k, ["kafka_partition", "kafka_offset"]).to_pylist()
    ]
    assert manifest.replays_removed == len(listed) - len(set(listed))
    assert manifest.duplicates_removed == len(below) - len(kept)
    assert validate_version(layout, "v1")["events"] == len(kept)
    # The job's intermediate output is gone; the version is its views and its manifest.
    assert not layout.store.list(f"{layout.version_prefix('v1')}{spark_job.DEDUPLICATED}/")
    if backend == "s3":  # Spark read and wrote the objects over s3a; nothing is on local disk
        assert all(name.startswith("s3a://") for name in manifest.input_files)
        assert all(layout.store.exists(k) for ks in manifest.output_files.values() for k in ks)
        assert not list((tmp_path / "data").rglob("*.parquet"))


def test_batch_dedup_stays_exact_when_every_id_hash_collides(
    spark_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job picks the ids it must fold, and the index entries that seed them, by a hash of
    the id: with a hash that maps every id to one value, all copies and all entries go
    through the fold, and the answer must not change."""
    from pyspark.sql import functions as F

    monkeypatch.setattr(spark_dedup, "id_hash", lambda column: F.lit(0).cast("long"))
    settings, layout, logs, _ = landed_zone(
        tmp_path, SEED + 2, {}, ids=400, buckets=12, created="mostly-on-time"
    )
    rows = [row for log in logs.values() for row in log]
    end = max(ingest_bucket(r["kafka_ts"], BUCKET_MS) for r in rows) + BUCKET_MS
    # A full run, then an incremental one whose dedup reads the first one's index.
    for name, horizon in (("v1", START_TS + 6 * BUCKET_MS), ("v2", end)):
        spark_job.run(settings, horizon, name, "test")
        below = [r for r in rows if r["kafka_ts"] < horizon]
        assert batch_views(layout, name) == oracle_views(below, DEDUP_MS), name
        assert read_manifest(layout, name).events == len(kept_rows(below, DEDUP_MS))
        validate_version(layout, name)
        publish(layout, name)
    assert read_manifest(layout, "v2").mode == "incremental"


def version_rows(layout: Layout, version: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view of a version, sorted: a key written twice (a day named twice,
    or merged wrong) shows as two rows, where a dict of views would hide it."""
    rows = {}
    for view in VIEWS:
        table = view_dataset(layout, version, view).to_table()
        rows[view.name] = sorted(tuple(r.values()) for r in table.to_pylist())
    return rows


def test_incremental_runs_equal_a_full_rebuild_and_the_oracle(
    spark_session: None, tmp_path: Path
) -> None:
    """Ten incremental runs (with compaction, a rollback and a resume between them) over a
    stream with duplicates inside and outside D, a crash replay and events late by days: every
    version equals the oracle, and a full rebuild at the end equals the last one row for row."""
    settings, layout, logs, replays = landed_zone(
        tmp_path, SEED + 1, {}, ids=400, buckets=12, created="mostly-on-time"
    )
    assert replays
    rows = [row for log in logs.values() for row in log]

    def run(horizon: int, name: str, full: bool = False) -> dict[str, Any]:
        spark_job.run(settings, horizon, name, "test", full=full)
        validate_version(layout, name)
        assert batch_views(layout, name) == oracle_views(
            [r for r in rows if r["kafka_ts"] < horizon], DEDUP_MS
        ), f"{name} at horizon {horizon}"
        return read_manifest(layout, name)

    def vid(n: int | str) -> str:  # version ids as runs make them (prune reads their time)
        return f"v20260101T0000{n:02d}Z-run" if isinstance(n, int) else f"v20260101T001000Z-{n}"

    horizons = [START_TS + (2 + i) * BUCKET_MS for i in range(10)]
    manifests = {}
    for i, horizon in enumerate(horizons):
        name = vid(i)
        manifests[name] = run(horizon, name)
        publish(layout, name)
        if i == 3:
            compact(layout, below_ms=horizon)
        if i == 5:  # back to run 4's version, then on from there: run 6 adds [h4, h6) to it
            rollback(layout, vid(4))
            resume(layout)
    assert manifests[vid(0)].mode == "full"
    assert all(m.mode == "incremental" for n, m in manifests.items() if n != vid(0))
    assert manifests[vid(6)].base_version == vid(4)
    assert manifests[vid(6)].increment.from_ms == horizons[4]
    # Increments really are partial: each read only its buckets, and some left days alone,
    # whose files the new version names under an older version's prefix.
    last = manifests[vid(9)]
    assert last.increment is not None and last.increment.buckets == 1
    assert last.increment.input_records < last.input_records
    increments = [m.increment for n, m in manifests.items() if n != vid(0)]
    # Every increment left some hours of account_minute alone, and some one a day of every view
    assert all(i.partitions_touched["account_minute"] < i.partitions["account_minute"]
               for i in increments)  # fmt: skip
    assert all(
        any(i.partitions_touched[v.name] < i.partitions[v.name] for i in increments) for v in VIEWS
    )
    outputs = last.output_files or {}
    shared = [k for ks in outputs.values() for k in ks if f"/{vid(9)}/" not in k]
    assert shared

    full = run(horizons[-1], vid("full"), full=True)
    assert full.mode == "full" and full.events == last.events
    assert version_rows(layout, vid("full")) == version_rows(layout, vid(9))

    # Retention keeps every file a kept version names, wherever it lies.
    publish(layout, vid("full"), rebuild=True)
    prune(layout, keep=2)
    assert list_versions(layout) == [vid(9), vid("full")]
    assert version_rows(layout, vid(9)) == version_rows(layout, vid("full"))
    assert all(layout.store.exists(k) for k in shared)
