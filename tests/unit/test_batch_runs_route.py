"""``GET /v1/batch/runs`` (the dashboard's batch-runs panel): published runs newest first, each
with its manifest's facts and a link to its Airflow run; unpublished runs left out; a deleted
version still listed, without its manifest's facts."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from lambda_contracts.db import make_engine
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import batch_runs, metadata
from serving.main import create_app
from tests.support.versions import put_counted_version

BUCKET = 60_000


def test_runs_newest_first_with_manifest_facts_and_airflow_links(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, partitions=1, bucket_ms=BUCKET, airflow_ui_url="http://ui.example:8080/"
    )
    layout = Layout.of(settings)
    put_counted_version(
        layout, "v1", 2 * BUCKET, BUCKET, 5, 5, run_id="manual_1", mode="full", elapsed_s=3.5
    )
    put_counted_version(
        layout, "v2", 5 * BUCKET, BUCKET, 9, 9, run_id="scheduled__2026-12-07T04:55:00+00:00",
        dag_id="lambda_batch", mode="incremental", base_version="v1", elapsed_s=1.25,
    )  # fmt: skip
    engine = make_engine(settings.speed_store_url)
    metadata.create_all(engine)
    runs = [  # (version, horizon, previous, published at, events, speed events, drift)
        ("v0", BUCKET, 0, 1_000, 2, 2, (0, 0)),  # its version is gone
        ("v1", 2 * BUCKET, BUCKET, 2_000, 5, 3, (0, 0)),
        ("v2", 5 * BUCKET, 2 * BUCKET, 3_000, 9, 5, (1, 250)),
        ("v3", 6 * BUCKET, 5 * BUCKET, 0, 10, None, (None, None)),  # not published (yet)
    ]
    with engine.begin() as conn:
        conn.execute(
            batch_runs.insert(),
            [
                {"version": v, "horizon_ms": h, "previous_horizon_ms": p, "published_at_ms": at,
                 "batch_events": n, "speed_events": s, "drift_events": d, "drift_cents": c}
                for v, h, p, at, n, s, (d, c) in runs
            ],
        )  # fmt: skip
    engine.dispose()
    pointer = BatchPointer("v2", 5 * BUCKET, int(time.time() * 1000))
    assert layout.swap_current(pointer, None)

    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/batch/runs", params={"limit": 10})
        assert client.get("/v1/batch/runs", params={"limit": 0}).status_code == 422
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["current_version"], body["pinned"]) == ("v2", False)
    assert [r["version"] for r in body["runs"]] == ["v2", "v1", "v0"]
    newest, first, gone = body["runs"]
    assert newest["current"] and not first["current"] and not gone["current"]
    assert (newest["increment_ms"], newest["batch_events"]) == (3 * BUCKET, 9)
    assert (newest["drift_events"], newest["drift_amount"]) == (1, "2.50")
    assert (newest["mode"], newest["elapsed_s"]) == ("incremental", 1.25)
    assert newest["airflow_run_url"] == (
        "http://ui.example:8080/dags/lambda_batch/runs/scheduled__2026-12-07T04%3A55%3A00%2B00%3A00"
    )
    assert (first["mode"], first["run_id"], first["airflow_run_url"]) == ("full", "manual_1", None)
    assert (gone["mode"], gone["elapsed_s"], gone["airflow_run_url"]) == (None, None, None)


def test_a_pinned_current_is_reported(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, partitions=1, bucket_ms=BUCKET)
    layout = Layout.of(settings)
    put_counted_version(layout, "v1", 2 * BUCKET, BUCKET, 5, 5)
    assert layout.swap_current(BatchPointer("v1", 2 * BUCKET, 1, pinned=True), None)
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/batch/runs").json()
    assert (body["current_version"], body["pinned"], body["runs"]) == ("v1", True, [])
