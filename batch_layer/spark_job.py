"""The PySpark recompute: landing zone → every declared view, as a new version.

Run by ``spark-submit`` (``python -m`` works too). Incremental by default: a run at horizon H
adds the landed buckets in [H_prev, H) to the published version at H_prev (the *base*, see
``batch_layer.increment``); ``--full`` (``lambda_rebuild``), or a missing or unusable base,
recomputes from the whole landing zone below H. Steps:

1. list the landing files of the buckets to read in the store (row counts from Parquet
   footers); Spark reads them by URI (a local path, or ``s3a://`` on S3);
2. deduplicate by the one dedup rule of ``lambda_contracts.dedup`` (a copy within the dedup
   horizon D after a kept copy of its TransactionID, in log order, is a duplicate): the ids
   with one copy and no entry in the base's dedup index are kept as they are; the others go
   through a fold per TransactionID (``spark_dedup.dedup_events``) seeded from the index —
   this also drops crash replays, which are copies of the same (partition, offset). The
   result is written once (under the version's prefix, removed before the manifest) and read
   back by each step (``spark_dedup.deduplicate``);
3. write this run's part of the dedup index: the ids kept in these buckets within D of H (the
   index is append-only: the base's files stay named until all they hold is older than D);
4. compute each view with the SQL derived from its declaration (``View.batch_sql``), and
   write only the view's partitions (event-time hours, or days: ``view_partitioning``) the new
   events fall in, a file per partition, each merged with the base's rows of that partition
   (every measure is mergeable); the other partitions stay the base's files
   (``spark_views.write_view``);
5. write the manifest naming every file of the version, shared ones included, last: a
   version exists only once its manifest does, so a killed job leaves only garbage.

It never touches CURRENT: publishing is a separate, validated step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from batch_layer.increment import cumulative, incremental_base
from batch_layer.inputs import spark_uri
from batch_layer.liveness import heartbeat
from batch_layer.spark_dedup import (
    BROADCAST_ROWS,
    EVENT_COLUMNS,
    INDEX_DDL,
    LANDING_DDL,
    count_replays,
    deduplicate,
    empty_frame,
    index_hits,
    kept_index_files,
    new_index_entries,
)
from batch_layer.spark_views import start_of, touched_partitions, write_view
from batch_layer.versions import check_reusable
from lambda_contracts.db import make_engine
from lambda_contracts.landing_files import parquet_rows
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import DAY_MS, HOUR_MS, Layout, landing_key_bucket
from lambda_contracts.manifest import BATCH_FORMAT, Counters, Increment, Manifest
from lambda_contracts.settings import Settings
from lambda_contracts.startup import checked_views
from lambda_contracts.view_set import ViewSet, registered_versions, with_previous

DEDUPLICATED = "deduplicated-events"  # under a version's prefix while the job runs (Spark
# skips paths starting with "_" or ".", so not "_deduplicated")
# An increment this small is read once and kept in memory: the dedup reads it three or four
# times, and a day of a small platform is a thousand small landing files to open each time.
CACHE_ROWS = 2_000_000
INDEX_FILES = 2  # files of a run's dedup index (local[2]: one task per core)
FOOTER_READERS = 8  # threads reading landing files' row counts (S3 round trips, local opens)


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


@dataclass(frozen=True)
class RunOf:
    """Which run wrote a version: its id and, in Airflow, its DAG (the UI links to it)."""

    run_id: str
    dag_id: str = ""


class Steps:
    """Wall time of each step of a run, for its manifest (where a slow run spends its time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._last, 2)
        self._last = now


def with_kept_versions(settings: Settings, views: ViewSet) -> ViewSet:
    """``views`` and the previous versions of changed views the speed store still computes:
    the batch version holds them too, so each keeps answering until its successor serves.
    Without the store's answer, the file's versions only (the previous ones then answer from
    the batch versions before this one, or 409 until their successors serve)."""
    if views.previous or not views.declared or settings.speed_store_url is None:
        return views
    try:
        engine = make_engine(settings.speed_store_url, create=False)
        try:
            return with_previous(views, registered_versions(engine))
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        print(f"warning: the speed store's view versions are unreadable ({exc!r})", flush=True)
        return views


def run(
    settings: Settings,
    horizon_ms: int,
    version: str,
    run_id: str,
    full: bool = False,
    views: ViewSet | None = None,
    dag_id: str = "",
) -> str:
    """Compute a complete version of ``views`` (default: the views file's) in the store;
    return its manifest's key.

    Adds the buckets in [H_prev, H) to the published version at H_prev unless ``full`` (or
    no usable base: see ``batch_layer.increment``). The views' files are written first, the
    manifest naming them last: until it exists the version does not (a killed attempt leaves
    garbage that a retry overwrites and ``prune`` removes).
    """
    layout = Layout.of(settings)
    manifest_key = layout.manifest_key(version)
    if layout.store.exists(manifest_key):
        return manifest_key  # an earlier attempt of this run completed: idempotent
    check_reusable(layout, version)  # a pruned id: its prefix may hold files others share
    started, steps = time.time(), Steps()
    layout.store.delete_prefix(layout.version_prefix(version))  # a killed attempt of this run
    views = with_kept_versions(
        settings, views if views is not None else ViewSet.load(settings.views_file)
    )
    with heartbeat(layout, version):  # prune keeps an unfinished version while it beats
        origin = RunOf(run_id, dag_id)
        return _run(layout, settings, horizon_ms, version, origin, full, views, started, steps)


def _run(
    layout: Layout,
    settings: Settings,
    horizon_ms: int,
    version: str,
    origin: RunOf,
    full: bool,
    views: ViewSet,
    started: float,
    steps: Steps,
) -> str:
    """The body of :func:`run`, inside the version's heartbeat."""
    from pyspark.sql import SparkSession  # heavy: imported only when the job runs
    from pyspark.sql import functions as F

    manifest_key = layout.manifest_key(version)
    base, why = (
        (None, "full recompute asked for")
        if full
        else incremental_base(layout, settings, horizon_ms, views.computed)
    )
    from_ms = base.horizon_ms if base else 0
    keys = layout.landing_files(below_ms=horizon_ms, from_ms=from_ms)
    with ThreadPoolExecutor(FOOTER_READERS) as pool:  # one footer read per file: I/O-bound
        rows = pool.map(lambda k: parquet_rows(layout, k), keys)
        file_rows = dict(zip((spark_uri(layout, k) for k in keys), rows, strict=True))
    dedup_prefix = f"{layout.version_prefix(version)}{DEDUPLICATED}/"
    index_prefix = layout.dedup_index_prefix(version)
    old_index = kept_index_files(base, from_ms, settings.dedup_horizon_ms)  # read now

    steps.done("list_inputs")
    borrowed = SparkSession.getActiveSession() is not None  # a caller's session: left running
    spark = SparkSession.builder.appName(f"lambda-batch-{version}").getOrCreate()
    steps.done("start_spark")
    try:
        landing = (
            spark.read.schema(LANDING_DDL).parquet(*file_rows)
            if file_rows
            else empty_frame(spark, LANDING_DDL)
        )
        if sum(file_rows.values()) <= CACHE_ROWS:
            landing = landing.cache()
        index = (
            index_hits(
                spark.read.schema(INDEX_DDL).parquet(*(spark_uri(layout, k) for k in old_index)),
                landing,
                small=sum(file_rows.values()) <= BROADCAST_ROWS,
            )
            if old_index
            else empty_frame(spark, INDEX_DDL)
        )
        # The deduplicated events are written once (the copies kept as they are, and the fold's
        # result), and read back for the counts, the index and each view. Caching them instead
        # (persist) does not fit a 2 GB driver at 10M events: the cached blocks spill, and
        # reading one back runs out of heap.
        flat = deduplicate(layout, landing, settings.dedup_horizon_ms, index, dedup_prefix)
        index.unpersist()
        steps.done("deduplicate")
        # In at most as many files as there are cores here: one would read the whole
        # deduplicated zone in one task.
        new_index_entries(flat, horizon_ms, settings.dedup_horizon_ms).coalesce(
            INDEX_FILES
        ).write.mode("overwrite").parquet(spark_uri(layout, index_prefix.rstrip("/")))
        steps.done("write_index")
        events = flat.where("kafka_ts IS NOT NULL").select(*EVENT_COLUMNS)
        # One pass for the counts and the hours the events fall in (an hour per group; the
        # ids none of whose copies is kept have no hour and no event)
        per_hour = flat.groupBy(start_of("created_time", HOUR_MS).alias("hour")).agg(
            F.count("kafka_ts").alias("events"), F.sum("copies").alias("rows_read")
        )
        counted = per_hour.collect()
        stats = {
            "events": sum(r["events"] for r in counted),
            "rows_read": sum(r["rows_read"] or 0 for r in counted),
        }
        touched = sorted(int(r["hour"]) for r in counted if r["events"] > 0)
        partitions = touched_partitions(touched, views.computed)
        steps.done("count")
        files = {}
        for view in views.computed:
            files[view.name] = write_view(
                layout, view, events, partitions[view.name], base, version
            )
            steps.done(f"view_{view.name}")
    finally:
        spark.catalog.clearCache()
        if not borrowed:
            spark.stop()
    steps.done("stop_spark")
    layout.store.delete_prefix(dedup_prefix)  # intermediate: not part of the version

    outputs = {name: [k for ks in by_part.values() for k in ks] for name, by_part in files.items()}
    new_index = [i.key for i in layout.store.list(index_prefix) if i.key.endswith(".parquet")]
    still_needed = kept_index_files(base, horizon_ms, settings.dedup_horizon_ms)  # by the next
    index_files = {**still_needed, **dict.fromkeys(new_index, horizon_ms)}
    written = [*new_index, *(k for ks in outputs.values() for k in ks)]
    layout.store.make_durable([k for k in written if k.startswith(layout.version_prefix(version))])
    rows_read = int(stats["rows_read"])
    replays = count_replays(layout, keys)
    counted = Counters(
        input_records=sum(file_rows.values()),
        records_read=rows_read,
        replays_removed=replays,
        duplicates_removed=rows_read - int(stats["events"]) - replays,
        events=int(stats["events"]),
    )
    increment = Increment(
        **counted.model_dump(),
        from_ms=from_ms,
        horizon_ms=horizon_ms,
        buckets=len({landing_key_bucket(k) for k in keys}),
        files=len(keys),
        days_touched=len({hour - hour % DAY_MS for hour in touched}),
        hours_touched=len(touched),
        partitions_touched={name: len(starts) for name, starts in partitions.items()},
        partitions={name: len(by_part) for name, by_part in files.items()},
    )
    manifest = Manifest(
        version=version,
        format=BATCH_FORMAT,
        run_id=origin.run_id,
        dag_id=origin.dag_id,
        horizon_ms=horizon_ms,
        bucket_ms=settings.bucket_ms,
        dedup_horizon_ms=settings.dedup_horizon_ms,
        code_version=code_version(),
        created_at_ms=int(time.time() * 1000),
        elapsed_s=round(time.time() - started, 3),
        steps_s=steps.seconds,
        mode="incremental" if base else "full",
        base_version=base.version if base else None,
        why=why,
        **cumulative(base, counted),
        increment=increment,
        input_files=file_rows,
        dedup_index_files=index_files,
        output_partitions={n: {str(p): ks for p, ks in by.items()} for n, by in files.items()},
        output_files=outputs,
        declared_views={d.name: d.version for d in views.declared},
    )
    layout.write_manifest(version, manifest)
    return manifest_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, required=True, help="exclusive ingest horizon, ms")
    parser.add_argument("--version", required=True, help="version id to write")
    parser.add_argument("--run-id", default="manual")
    parser.add_argument("--dag-id", default="", help="the Airflow DAG of the run, if any")
    parser.add_argument(
        "--full", action="store_true", help="recompute from the whole landing zone (rebuild)"
    )
    args = parser.parse_args()
    settings = Settings()
    views = checked_views(settings)  # an invalid views file: one line, exit 78
    # Compaction keeps every landing file this job may list until the job is done.
    with reading_landing(Layout.of(settings)):
        manifest = run(
            settings, args.horizon, args.version, args.run_id, args.full, views, args.dag_id
        )
    print(json.dumps({"version": args.version, "manifest": manifest}))


if __name__ == "__main__":
    main()


if __name__ == "__main__":
    main()
