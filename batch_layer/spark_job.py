"""The PySpark recompute: landing zone (buckets < H) → every declared view, as a new version.

Run by ``spark-submit`` (``python -m`` works too). Steps:

1. list the landing files of buckets below the horizon H (row counts from Parquet footers);
2. deduplicate in one aggregation keyed by TransactionID: the first copy in log order
   (Kafka timestamp, partition, offset) wins — this also drops crash replays, which are copies
   of the same (partition, offset);
3. compute each view with the SQL derived from its declaration (``View.batch_sql``);
4. write Parquet into a staging directory with a manifest, then rename it to
   ``versions/<version>``: a killed job leaves only an ignored staging directory.

It never touches CURRENT: publishing is a separate, validated step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

from lambda_contracts.durable import fsync_dir
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import LANDING_COLUMNS, LANDING_FILE, LOG_ORDER, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS

SPARK_TYPES = {"string": "STRING", "int64": "BIGINT", "int32": "INT"}
LANDING_DDL = ", ".join(f"{name} {SPARK_TYPES[kind]}" for name, kind in LANDING_COLUMNS)
EVENT_COLUMNS = [name for name, _ in LANDING_COLUMNS]


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dedup_sql(relation: str) -> str:
    """First copy of each TransactionID in log order, and how many copies there were.

    One aggregation does both dedups: a crash replay is a second copy of the same
    (partition, offset), hence of the same TransactionID, and is dropped with the duplicates.
    """
    order = f"struct({', '.join(LOG_ORDER)})"
    cols = ", ".join(f"first.{c} AS {c}" for c in EVENT_COLUMNS)
    return (
        f"SELECT {cols}, copies FROM ("
        f" SELECT min_by(struct(*), {order}) AS first, count(*) AS copies"
        f" FROM {relation} GROUP BY transaction_id)"
    )


def count_replays(files: list[Path]) -> int:
    """Records landed twice at the same (partition, offset), e.g. re-landed after a crash.

    Only files whose offset ranges overlap can share a record, and they are rare, so their
    offsets are read here in the driver instead of counting distinct positions in Spark.
    """
    by_partition: dict[int, list[tuple[int, int, Path]]] = {}
    for f in files:
        m = LANDING_FILE.match(f.name)
        if m:
            by_partition.setdefault(int(m["partition"]), []).append(
                (int(m["first"]), int(m["last"]), f)
            )
    replays = 0
    for ranges in by_partition.values():
        ranges.sort()
        group: list[Path] = []
        group_end = -1
        for first, last, path in [*ranges, (1 << 62, 1 << 62, Path())]:
            if first > group_end:
                if len(group) > 1:
                    offsets = [
                        o
                        for p in group
                        for o in pq.read_table(p, columns=["kafka_offset"])
                        .column("kafka_offset")
                        .to_pylist()
                    ]
                    replays += len(offsets) - len(set(offsets))
                group, group_end = [], -1
            group.append(path)
            group_end = max(group_end, last)
    return replays


def run(settings: Settings, horizon_ms: int, version: str, run_id: str) -> Path:
    """Compute and stage a complete version; return its final directory."""
    from pyspark.sql import SparkSession  # heavy: imported only when the job runs

    layout = Layout(settings.data_dir)
    final_dir = layout.version_dir(version)
    if (final_dir / "manifest.json").exists():
        return final_dir  # an earlier attempt of this run completed: idempotent
    started = time.time()
    files = layout.landing_files(below_ms=horizon_ms)
    file_rows = {str(f): pq.ParquetFile(f).metadata.num_rows for f in files}
    staging = layout.versions_dir / "_staging" / version
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    spark = SparkSession.builder.appName(f"lambda-batch-{version}").getOrCreate()
    try:
        landing = (
            spark.read.schema(LANDING_DDL).parquet(*file_rows)
            if file_rows
            else (spark.createDataFrame([], LANDING_DDL))
        )
        landing.createOrReplaceTempView("landing")
        deduped = spark.sql(dedup_sql("landing")).persist()
        deduped.createOrReplaceTempView("events")
        stats = spark.sql(
            "SELECT count(*) AS events, coalesce(sum(copies), 0) AS rows_read FROM events"
        ).first()
        outputs = {}
        for view in VIEWS:
            frame = spark.sql(view.batch_sql("events"))
            target = staging / view.name
            frame.coalesce(1).sortWithinPartitions(*view.key_columns).write.parquet(str(target))
            outputs[view.name] = sum(
                pq.ParquetFile(p).metadata.num_rows for p in target.glob("*.parquet")
            )
        deduped.unpersist()
    finally:
        spark.stop()

    rows_read = int(stats["rows_read"])
    replays = count_replays(files)
    manifest = {
        "version": version,
        "run_id": run_id,
        "horizon_ms": horizon_ms,
        "bucket_ms": settings.bucket_ms,
        "code_version": code_version(),
        "created_at_ms": int(time.time() * 1000),
        "elapsed_s": round(time.time() - started, 3),
        "input_files": file_rows,
        "input_records": sum(file_rows.values()),
        "records_read": rows_read,
        "replays_removed": replays,
        "duplicates_removed": rows_read - int(stats["events"]) - replays,
        "events": int(stats["events"]),
        "output_rows": outputs,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for path in sorted(staging.rglob("*"), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    shutil.rmtree(final_dir, ignore_errors=True)  # a manifest-less leftover of a killed rename
    os.replace(staging, final_dir)
    fsync_dir(final_dir.parent)
    return final_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, required=True, help="exclusive ingest horizon, ms")
    parser.add_argument("--version", required=True, help="version id to write")
    parser.add_argument("--run-id", default="manual")
    args = parser.parse_args()
    settings = Settings()
    # Compaction keeps every landing file this job may list until the job is done.
    with reading_landing(Layout(settings.data_dir)):
        path = run(settings, args.horizon, args.version, args.run_id)
    print(json.dumps({"version": args.version, "path": str(path)}))


if __name__ == "__main__":
    main()
