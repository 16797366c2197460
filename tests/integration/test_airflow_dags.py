"""``airflow dags test`` of both DAGs against a real landing zone, real Spark, real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.store_schema import batch_runs
from tests.support.pipeline import (
    SpeedProcess,
    airflow,
    batch_views,
    expected_views,
    produce,
    wait_caught_up,
    wait_sealed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000


def test_dags_test_batch_then_rebuild_with_reland(make_settings, tmp_path: Path) -> None:
    settings = make_settings(bucket_ms=BUCKET_MS, landing_flush_ms=300, idle_seal_grace_ms=200)
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)
    speed = SpeedProcess(settings).start()
    truth = produce(
        settings,
        tmp_path / "t.jsonl",
        "--count",
        "3000",
        "--rate",
        "1500",
        "--duplicates",
        "0.05",
        "--late",
        "0.05",
        "--malformed",
        "0.02",
    )
    wait_caught_up(settings, engine)
    wait_sealed(settings, truth)
    assert speed.terminate() == 0

    migrated = airflow(settings, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    result = airflow(settings, "dags", "test", "lambda_batch")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    current = layout.read_current()
    assert current is not None
    assert batch_views(layout, current.version) == expected_views(truth)
    with engine.connect() as conn:
        run = conn.execute(batch_runs.select().where(batch_runs.c.version == current.version)).one()
    assert run.drift_events == 0 and run.batch_events == sum(
        1 for _ in {r.event.transaction_id for r in truth if r.event}
    )
    written_by = layout.read_manifest(current.version)
    assert written_by is not None and written_by.dag_id == "lambda_batch"  # the UI's link
    assert written_by.run_id.startswith("manual__")  # Airflow's run id, rendered

    # Lose a bucket of the landing zone, then rebuild re-landing the whole range from Kafka.
    first_bucket = layout.landed_buckets()[0]
    for key in layout.landing_keys_by_bucket()[first_bucket]:
        layout.store.delete(key)
    conf = json.dumps({"reland_from_ms": 0, "reland_to_ms": current.horizon_ms})
    rebuilt = airflow(settings, "dags", "test", "lambda_rebuild", "--conf", conf)
    assert rebuilt.returncode == 0, (rebuilt.stdout + rebuilt.stderr)[-4000:]
    again = layout.read_current()
    assert again.version != current.version and again.horizon_ms == current.horizon_ms
    assert layout.read_manifest(again.version).dag_id == "lambda_rebuild"
    assert batch_views(layout, again.version) == expected_views(truth)
