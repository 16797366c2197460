"""Training the AOT cache the batch job's driver JVM starts from (JDK 25+, see ``jvm``).

``python -m batch_layer.jvm_training`` trains it once per machine (``make`` does, before
``up``, ``test`` and ``bench``): a full run of the real job over a small synthetic landing
zone in a temporary directory, written to a temporary name and renamed when whole. It needs
the job's command line (``submit``), which needs the JVM's options (``jvm``): training sits
above both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from batch_layer.jvm import GC_OPTIONS, aot_cache, describe, prune
from batch_layer.submit import spark_submit_command, submit_env
from lambda_contracts.landing_files import LANDING_SCHEMA, write_landing_table
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings

TRAINING_EVENTS = 300_000


def training_landing(layout: Layout, settings: Settings, events: int) -> int:
    """A small landing zone in the real layout (2 % repeated ids, two partitions, twelve
    buckets); returns the horizon above it. What the job does with it does not matter, only
    that it runs every step the real job runs."""
    rng = np.random.default_rng(7)
    per_file = events // 24
    offset = {0: 0, 1: 0}
    for bucket in range(12):
        for partition in (0, 1):
            first = offset[partition]
            ids = np.arange(first, first + per_file) * 2 + partition
            repeated = rng.random(per_file) < 0.02
            ids[repeated] = rng.choice(ids, int(repeated.sum()))
            ts = bucket * settings.bucket_ms + np.arange(per_file) * settings.bucket_ms // per_file
            accounts = rng.integers(0, 500, (2, per_file))
            table = pa.table(
                {
                    "transaction_id": [f"train-{i}" for i in ids],
                    "created_time": ts,
                    "source_account_id": [f"A{a}" for a in accounts[0]],
                    "target_account_id": [f"A{a}" for a in accounts[1]],
                    "amount_cents": rng.integers(1, 100_000, per_file),
                    "kafka_partition": np.full(per_file, partition, dtype=np.int32),
                    "kafka_offset": np.arange(first, first + per_file),
                    "kafka_ts": ts,
                },
                schema=LANDING_SCHEMA,
            )
            write_landing_table(layout, settings.bucket_ms, partition, table)
            offset[partition] += per_file
    return 12 * settings.bucket_ms


def train(settings: Settings, events: int = TRAINING_EVENTS) -> Path | None:
    """Write the AOT cache for ``settings`` unless it exists; returns its path (None on a JDK
    without AOT caches)."""
    cache = aot_cache(settings)
    if cache is None or cache.is_file():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="lambda-jvm-training-") as scratch:
        # The cache serves the driver JVM: trained on a local job over a local zone, the
        # class path of a job on the local store (one on S3 adds the s3a jars: no cache)
        training_settings = {"data_dir": Path(scratch), "storage_url": None}
        local = settings.model_copy(update={**training_settings, "spark_master": "local[2]"})
        horizon = training_landing(Layout.of(local), local, events)
        training = f"{GC_OPTIONS} -XX:AOTCacheOutput={partial}"
        cmd = spark_submit_command(local, horizon, "vtraining", "jvm-training", True, training)
        try:
            subprocess.run(cmd, check=True, env=submit_env(local), capture_output=True, text=True)
        except subprocess.CalledProcessError as failed:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the training run failed:\n{failed.stderr[-4000:]}") from failed
    if not partial.is_file():  # a JVM that ignored -XX:AOTCacheOutput
        raise RuntimeError(f"the training run wrote no cache ({partial})")
    partial.rename(cache)
    prune(cache.parent)
    return cache


def main() -> None:
    settings = Settings()
    try:
        train(settings)
    except RuntimeError as failed:  # the job runs without a cache, only its start is slower
        print(f"no Spark AOT cache: {failed}", file=sys.stderr)
        return
    print(describe(settings))


if __name__ == "__main__":
    main()
