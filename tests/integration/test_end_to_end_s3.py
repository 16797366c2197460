"""End to end with the master dataset on S3 (versitygw): nothing on the local disk but services.

The adversarial stream → the speed layer lands on S3 (killed -9 once midway) → a Spark job
killed -9 while it writes its version → ``lambda_batch`` in Airflow runs Spark over s3a://
and publishes → the serving API, loading the version from S3, equals the ground truth.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batch_layer.catalog import is_validated, list_versions, read_manifest
from batch_layer.versions import new_version_id
from infra.s3_server import S3Server
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from serving.main import create_app
from tests.support.pipeline import (
    SpeedProcess,
    airflow,
    assert_landing_holds_every_valid_event_once,
    batch_views,
    expected_views,
    kill_recompute_mid_write,
    mixed_stream,
    read_truth,
    start_producer,
    wait_caught_up,
    wait_sealed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000


def test_the_platform_on_s3_is_exact_through_kills(
    make_settings, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    settings = make_settings(
        bucket_ms=BUCKET_MS,
        landing_flush_ms=300,
        idle_seal_grace_ms=200,
        storage_url=f"s3://{s3_server.buckets[0]}/e2e-{uuid.uuid4().hex[:8]}",
        s3_endpoint=s3_server.endpoint,
    )
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)

    # The speed layer lands on S3 while the producer runs; kill -9 it once midway.
    truth_file = tmp_path / "truth.jsonl"
    producer = start_producer(settings, truth_file, "--count", "4000", *mixed_stream(1000, 40))
    speed = SpeedProcess(settings).start()
    time.sleep(2.0)
    speed.kill()
    speed = SpeedProcess(settings).start()
    assert producer.wait(300) == 0
    truth = read_truth(truth_file)
    wait_caught_up(settings, engine)
    horizon = wait_sealed(settings, truth)
    assert speed.terminate() == 0
    assert_landing_holds_every_valid_event_once(settings, truth)

    # A recompute killed while it writes its version: no version appears, CURRENT stays.
    killed = new_version_id("killed")
    kill_recompute_mid_write(settings, horizon, killed)
    assert layout.read_current() is None and list_versions(layout) == []

    # lambda_batch in Airflow: Spark over s3a://, validate, publish.
    migrated = airflow(settings, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    result = airflow(settings, "dags", "test", "lambda_batch")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    current = layout.read_current()
    assert current is not None and is_validated(read_manifest(layout, current.version))
    manifest = read_manifest(layout, current.version)
    assert all(name.startswith("s3a://") for name in manifest.input_files)
    expected = expected_views(truth)
    assert batch_views(layout, current.version) == expected

    # Serving loads the version from S3; batch and speed together equal the ground truth.
    minutes = expected["global_minute"]
    start = min(k[-1] for k in minutes)
    end = max(k[-1] for k in minutes) + 60_000
    with TestClient(create_app(settings)) as client:
        totals = client.get("/v1/totals", params={"start": start, "end": end}).json()
    assert totals["meta"]["batch_version"] == current.version
    assert totals["count"] == sum(v[0] for v in minutes.values())
    assert totals["sum"] == f"{Decimal(sum(v[1] for v in minutes.values())) / 100:.2f}"

    # Nothing of the master dataset or the views is on the local disk.
    assert not list(settings.data_dir.rglob("*.parquet"))
