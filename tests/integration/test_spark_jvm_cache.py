"""The real job starts from the AOT cache that ``python -m batch_layer.jvm_training`` trains.

``-XX:AOTMode=on`` makes the JVM exit instead of silently running without the cache, so a
cache trained for another class path, JDK or Spark, or one written half, fails this test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from batch_layer import jvm, jvm_training
from batch_layer.submit import spark_submit_command, submit_env
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings


def test_the_job_runs_from_the_trained_aot_cache(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    cache = jvm_training.train(settings)  # `make test` trained it: this returns at once
    if cache is None:
        pytest.skip("no JDK 25.0.3+ here: Spark runs without an AOT cache")
    layout = Layout.of(settings)
    horizon = jvm_training.training_landing(layout, settings, 24_000)
    options = jvm.driver_java_options(settings)
    assert f"-XX:AOTCache={cache}" in options
    cmd = spark_submit_command(settings, horizon, "vaot", "aot", True, f"{options} -XX:AOTMode=on")
    done = subprocess.run(cmd, env=submit_env(settings), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = layout.read_manifest("vaot")
    assert manifest is not None
    ids: set[str] = set()  # every copy lies within D of its first: one event per id
    for key in layout.landing_files(below_ms=horizon):
        ids.update(pq.read_table(layout.store.path(key), columns=["transaction_id"])[0].to_pylist())
    assert manifest.events == len(ids) > 20_000
