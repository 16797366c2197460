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
   through a fold per TransactionID (:func:`dedup_events`) seeded from the index — this also
   drops crash replays, which are copies of the same (partition, offset). The result is
   written once (under the version's prefix, removed before the manifest) and read back by
   each step (:func:`deduplicate`);
3. write this run's part of the dedup index: the ids kept in these buckets within D of H (the
   index is append-only: the base's files stay named until all they hold is older than D);
4. compute each view with the SQL derived from its declaration (``View.batch_sql``), and
   write only the view's partitions (event-time hours, or days: ``view_partitioning``) the new
   events fall in, a file per partition, each merged with the base's rows of that partition
   (every measure is mergeable); the other partitions stay the base's files;
5. write the manifest naming every file of the version, shared ones included, last: a
   version exists only once its manifest does, so a killed job leaves only garbage.

It never touches CURRENT: publishing is a separate, validated step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from batch_layer.increment import Base, cumulative, incremental_base
from batch_layer.inputs import spark_uri
from batch_layer.liveness import heartbeat
from batch_layer.versions import check_reusable
from lambda_contracts.batch_files import view_schema
from lambda_contracts.dedup import DEDUP_ORDER, RECORD_TIME, is_new_event, remembered_from
from lambda_contracts.landing_files import parquet_rows, read_landing_file
from lambda_contracts.landing_lock import reading_landing
from lambda_contracts.layout import (
    DAY_MS,
    HOUR_MS,
    LANDING_COLUMNS,
    VIEW_PARTITION_DIR,
    Layout,
    landing_file_range,
    landing_key_bucket,
    view_partitioning,
)
from lambda_contracts.manifest import BATCH_FORMAT, Counters, Increment, Manifest
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS, View

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

SPARK_TYPES = {"string": "STRING", "int64": "BIGINT", "int32": "INT"}
DEDUPLICATED = "deduplicated-events"  # under a version's prefix while the job runs (Spark
# skips paths starting with "_" or ".", so not "_deduplicated")
LANDING_DDL = ", ".join(f"{name} {SPARK_TYPES[kind]}" for name, kind in LANDING_COLUMNS)
EVENT_COLUMNS = [name for name, _ in LANDING_COLUMNS]
INDEX_DDL = "transaction_id STRING, last_kept_ts BIGINT"
BROADCAST_ROWS = 1_000_000  # ids this few are broadcast to a join (no shuffle of the other side)
# An increment this small is read once and kept in memory: the dedup reads it three or four
# times, and a day of a small platform is a thousand small landing files to open each time.
CACHE_ROWS = 2_000_000
INDEX_FILES = 2  # files of a run's dedup index (local[2]: one task per core)
VIEW_TASKS = 64  # most tasks a view's partitions are shuffled into (see write_view)
FOOTER_READERS = 8  # threads reading landing files' row counts (S3 round trips, local opens)
ID_HASH = "id_hash"  # xxhash64 of the TransactionID: picks the ids the dedup fold must see
FOLD = "fold"  # 1 on the copies the dedup fold must see; the scratch copies are split by it
FOLDED = "folded"  # the fold's result, under the run's scratch prefix
# The scratch copies' ids are nearly all unique: a Parquet dictionary of them always overflows
# and is thrown away, so none is tried (measured: a 10M-row write 15 s → 12.5 s).
UNIQUE_IDS = {"parquet.enable.dictionary#transaction_id": "false"}
NO_KEPT_COPY = -(1 << 62)  # "no kept copy yet": every copy is new against it, without overflow
BYPASS_PARTIAL = "spark.sql.execution.bypassPartialAggregation"  # Spark 4.3's switch


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


def dedup_events(landing: DataFrame, horizon_ms: int, index: DataFrame) -> DataFrame:
    """The copies that count, by the contracts' dedup rule, with the copies read per id.

    Returns one row per TransactionID of ``landing``: ``copies`` (how many landed copies it
    has), ``kept`` (an array of the event rows that count, in log order) and ``last_ts`` (the
    Kafka time of its last kept copy, from ``index`` if none of these is kept). The rule
    compares each copy with the last *kept* copy of its id, so it is a sequential scan per id;
    it runs as one aggregation, exactly and without Python workers:

    1. group by TransactionID and collect the copies as structs whose first fields are the
       log order (:data:`DEDUP_ORDER`), so ``array_sort`` puts them in log order;
    2. join the dedup index (``transaction_id``, ``last_kept_ts``): the last kept copy of the
       id before this run's buckets, if within D of them;
    3. fold each sorted array with Spark's ``aggregate`` higher-order function, starting from
       the index's copy (or none): each copy is kept iff ``is_new_event`` (the contracts'
       predicate, applied to Spark columns) holds against the last kept one.

    Why this and not a grouped pandas/Arrow UDF: which ids have copies is only known after the
    shuffle, so a UDF would ship every row through a Python worker (and pandas is no declared
    dependency); here everything stays in the JVM. The fold costs O(copies * kept) per id,
    tiny for real duplicates (a retry, a resend). It needs one id's copies in one task's
    memory: an id reused millions of times would be the limit. A crash replay — the same
    (partition, offset) landed twice — has the same timestamp as its twin, so it is always a
    duplicate (0 ≤ D) and is dropped here too.
    """
    from pyspark.sql import functions as F

    fields = [*DEDUP_ORDER, *(c for c in EVENT_COLUMNS if c not in DEDUP_ORDER)]
    copies = F.array_sort(F.collect_list(F.struct(*fields)))
    per_id = landing.groupBy("transaction_id").agg(copies.alias("copies"))
    per_id = per_id.join(index, "transaction_id", "left")  # index: one row per id (index_hits)

    def step(acc: Column, copy: Column) -> Column:
        keep = is_new_event(acc["last_ts"], copy[RECORD_TIME], horizon_ms)
        kept = F.struct(
            copy[RECORD_TIME].alias("last_ts"), F.array_append(acc["kept"], copy).alias("kept")
        )
        return F.when(keep, kept).otherwise(acc)

    ordered = F.col("copies")
    none_kept = F.filter(ordered, lambda _: F.lit(False))  # an empty array of the copies' type
    start = F.struct(
        F.coalesce(F.col("last_kept_ts"), F.lit(NO_KEPT_COPY)).alias("last_ts"),
        none_kept.alias("kept"),
    )
    folded = F.aggregate(ordered, start, step)
    return per_id.select(
        "transaction_id",
        F.size(ordered).alias("copies"),
        folded["kept"].alias("kept"),
        folded["last_ts"].alias("last_ts"),
    )


@contextmanager
def partial_aggregation(spark: SparkSession, enabled: bool) -> Iterator[None]:
    """Whether the aggregations that actions inside this block plan get a map-side partial
    aggregation before their shuffle (Spark 4.3's ``bypassPartialAggregation``: without
    one, rows are shuffled by key and aggregated once).

    A grouping into about as many groups as rows (an account's minute) gains nothing from a
    partial aggregation: it only copies every row into a hash map before the shuffle
    (measured on the 10M-event ``account_minute``: its map stage 6.0 s → 2.5 s). A grouping
    into few groups (a whole minute) needs it. The setting is read when an action plans its
    query, so it is set around the action only.
    """
    before = spark.conf.get(BYPASS_PARTIAL, "false")
    spark.conf.set(BYPASS_PARTIAL, "false" if enabled else "true")
    try:
        yield
    finally:
        spark.conf.set(BYPASS_PARTIAL, before)


def id_hash(column: str) -> Column:
    """A 64-bit hash of an id column: the fixed-width key :func:`deduplicate` counts ids by."""
    from pyspark.sql import functions as F

    return F.xxhash64(column)


def deduplicate(
    layout: Layout, landing: DataFrame, horizon_ms: int, index: DataFrame, scratch: str
) -> DataFrame:
    """The landed copies judged by the dedup rule, as :func:`flatten`'s rows.

    Nearly every id has one copy and no index entry: such a copy is kept as it is, with no
    array collected. Only the ids with several copies or an index entry go through
    :func:`dedup_events`' fold. So the landing zone is read twice, and written once under
    ``scratch`` (a store prefix):

    1. its ids are counted, to find the ids the fold must see;
    2. each copy is marked by whether the fold must see it (a join with those few ids,
       broadcast when they are few), and all are written, split by that mark (``FOLD=0``
       holds the copies kept as they are);
    3. the few marked copies are folded and the result written.

    Ids are counted and joined by a 64-bit hash of the id (:func:`id_hash`): a fixed-width
    key is much cheaper than a string. It stays exact, because the hash only picks the path:
    a copy skips the fold only if no other copy and no index entry has its hash, and the
    fold itself groups by the id. A collision only sends a few single copies through the
    fold, which keeps them.
    """
    from pyspark.sql import functions as F

    spark = landing.sparkSession
    hashed = landing.withColumn(ID_HASH, id_hash("transaction_id"))
    # Repartitioned first: nearly every id is unique, so a map-side partial count would only
    # copy the rows into a hash map (measured at 10M ids: 7.1 s → 5.4 s without it).
    repeated = hashed.select(ID_HASH).repartition(ID_HASH).groupBy(ID_HASH).count()
    judged = (
        repeated.where("count > 1")
        .select(ID_HASH)
        .unionByName(index.select(id_hash("transaction_id").alias(ID_HASH)))
        .distinct()
        .withColumn(FOLD, F.lit(1))
        .cache()  # a few percent of the ids: small, counted now and joined below
    )
    few = judged.count() <= BROADCAST_ROWS
    marked = hashed.join(F.broadcast(judged) if few else judged, ID_HASH, "left")
    marked.select(*EVENT_COLUMNS, F.coalesce(FOLD, F.lit(0)).alias(FOLD)).write.partitionBy(
        FOLD
    ).mode("overwrite").options(**UNIQUE_IDS).parquet(spark_uri(layout, scratch.rstrip("/")))
    judged.unpersist()

    def part(name: str, schema: StructType) -> DataFrame:
        prefix = f"{scratch}{name}/"
        if not layout.store.list(prefix):  # Spark writes no directory for no rows
            return empty_frame(spark, schema)
        return spark.read.schema(schema).parquet(spark_uri(layout, prefix.rstrip("/")))

    several = part(f"{FOLD}=1", landing.schema)
    folded = flatten(dedup_events(several, horizon_ms, index))
    folded.write.mode("overwrite").parquet(spark_uri(layout, f"{scratch}{FOLDED}"))
    single = F.lit(1)
    singles = part(f"{FOLD}=0", landing.schema).select(
        "transaction_id",
        F.lit(True).alias("head"),
        single.alias("copies"),
        F.col(RECORD_TIME).alias("last_ts"),
        single.alias("kept_count"),
        *(c for c in EVENT_COLUMNS if c != "transaction_id"),
    )
    return singles.unionByName(part(FOLDED, folded.schema))


def index_hits(index: DataFrame, landing: DataFrame, small: bool) -> DataFrame:
    """The index's entries for the ids in ``landing``, one per id (an id may have an entry in
    several of the index's files: the newest is its last kept copy). With a ``small``
    increment its ids are broadcast, so the index is scanned, never shuffled.

    Cached: :func:`deduplicate` uses the hits twice (to pick the ids the fold must see, then
    in the fold), and they are at most the increment's ids, where the index holds every id
    kept in the last D. Measured with 100k new ids against a 5M-id index, the time deduplicate
    adds over the same run without history: 2.8-4.1 s scanning the index twice, 1.6-2.4 s
    once."""
    from pyspark.sql import functions as F

    ids = landing.select("transaction_id").distinct()
    hits = index.join(F.broadcast(ids) if small else ids, "transaction_id", "left_semi")
    return hits.groupBy("transaction_id").agg(F.max("last_kept_ts").alias("last_kept_ts")).cache()


def flatten(dedup: DataFrame) -> DataFrame:
    """:func:`dedup_events`' rows as flat rows, one per kept event (one with null event
    columns for an id none of whose copies is kept), the per-id columns (``copies``,
    ``last_ts``, ``kept_count``) on the first row of each id only (``head``). Flat Parquet is
    much cheaper to write and read back than arrays of structs."""
    from pyspark.sql import functions as F

    exploded = dedup.select(
        "transaction_id",
        "copies",
        "last_ts",
        F.size("kept").alias("kept_count"),
        F.posexplode_outer("kept").alias("pos", "event"),
    )
    head = F.coalesce(F.col("pos"), F.lit(0)) == 0
    per_id = [F.when(head, F.col(c)).alias(c) for c in ("copies", "last_ts", "kept_count")]
    event = [F.col(f"event.{c}").alias(c) for c in EVENT_COLUMNS if c != "transaction_id"]
    return exploded.select("transaction_id", head.alias("head"), *per_id, *event)


def new_index_entries(flat: DataFrame, horizon_ms: int, dedup_ms: int) -> DataFrame:
    """This run's part of the dedup index: the ids with a copy kept in its buckets, and the
    time of the last one, where that can still make a later copy (at or after the horizon)
    a duplicate."""
    from pyspark.sql import functions as F

    return flat.where(
        F.col("head")
        & (F.col("kept_count") > 0)
        & (F.col("last_ts") >= remembered_from(horizon_ms, dedup_ms))
    ).select("transaction_id", F.col("last_ts").alias("last_kept_ts"))


def kept_index_files(base: Base | None, from_ms: int, dedup_ms: int) -> dict[str, int]:
    """The base's index files that a run reading the buckets from ``from_ms`` on needs, with
    the horizon of the run that wrote each: a file from a run at h holds kept copies before
    h, all of them too old to matter for copies at or after ``from_ms`` once h <= from - D."""
    if base is None:
        return {}
    oldest = remembered_from(from_ms, dedup_ms)
    return {key: h for key, h in base.dedup_index_files.items() if h > oldest}


def count_replays(layout: Layout, keys: list[str]) -> int:
    """Records landed twice at the same (partition, offset), e.g. re-landed after a crash.

    Only files whose offset ranges overlap can share a record, and they are rare, so their
    offsets are read here in the driver instead of counting distinct positions in Spark.
    """
    by_partition: dict[int, list[tuple[int, int, str]]] = {}
    for key in keys:
        found = landing_file_range(key)
        if found:
            partition, first, last = found
            by_partition.setdefault(partition, []).append((first, last, key))
    replays = 0
    for ranges in by_partition.values():
        ranges.sort()
        group: list[str] = []
        group_end = -1
        for first, last, key in [*ranges, (1 << 62, 1 << 62, "")]:
            if first > group_end:
                if len(group) > 1:
                    offsets = [
                        o
                        for k in group
                        for o in read_landing_file(layout, k, ["kafka_offset"])
                        .column("kafka_offset")
                        .to_pylist()
                    ]
                    replays += len(offsets) - len(set(offsets))
                group, group_end = [], -1
            group.append(key)
            group_end = max(group_end, last)
    return replays


class Steps:
    """Wall time of each step of a run, for its manifest (where a slow run spends its time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._last, 2)
        self._last = now


def empty_frame(spark: SparkSession, schema: str | StructType) -> DataFrame:
    """An empty DataFrame of a schema (``name TYPE, …`` or flat), made in the JVM.
    ``createDataFrame([])`` starts Python workers to convert no rows: about 4 s of a
    10M-event run, measured."""
    if not isinstance(schema, str):
        schema = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields)
    columns = (column.split() for column in schema.split(", "))
    return spark.range(0).selectExpr(*(f"CAST(NULL AS {kind}) AS {name}" for name, kind in columns))


def view_ddl(view: View) -> str:
    """The Spark schema of a view's files, derived from the one declaration of it
    (``lambda_contracts.batch_files.view_schema``)."""
    spark_type = {pa.string(): "STRING", pa.int64(): "BIGINT"}
    return ", ".join(f"{f.name} {spark_type[f.type]}" for f in view_schema(view))


def start_of(column: str, span_ms: int) -> Column:
    """The start of the ``span_ms`` period (an hour, a day) a time in ms falls in."""
    from pyspark.sql import functions as F

    return F.expr(f"({column} - pmod({column}, {span_ms}))")


def files_by_partition(layout: Layout, prefix: str) -> dict[int, list[str]]:
    """The Parquet files Spark wrote under ``prefix`` with ``partitionBy``, by the start of
    their partition's period."""
    found: dict[int, list[str]] = {}
    for info in layout.store.list(prefix):
        matched = VIEW_PARTITION_DIR.search(info.key)
        if matched and info.key.endswith(".parquet"):
            found.setdefault(int(matched["start"]), []).append(info.key)
    return found


def touched_partitions(hours: list[int]) -> dict[str, list[int]]:
    """Each view's partitions (their starts) that events in these event-time hours fall in."""
    return {
        view.name: sorted({view_partitioning(view).start(hour) for hour in hours}) for view in VIEWS
    }


def write_view(
    layout: Layout,
    view: View,
    events: DataFrame,
    touched: list[int],
    base: Base | None,
    version: str,
) -> dict[int, list[str]]:
    """Write the view's ``touched`` partitions (their starts: :func:`touched_partitions`),
    each the base's rows of it merged with the new events', a file per partition; return the
    version's files by partition, the untouched partitions' being the base's.

    A file per partition needs each partition's rows in one task. A view keyed by a dimension
    (an account) has about one group per event at these rates: its events are shuffled by
    partition once, into a task per partition (up to :data:`VIEW_TASKS`; 49 hours hashed into
    the default 4 tasks were unevenly spread: 8.8 s against 7.6 s, measured at 10M events),
    and each task aggregates whole partitions with no map-side partial aggregation (measured
    on a day of account_minute merged with the base: 9.2 s with one, 6.6 s without), as do
    the base's rows of a merged partition, one per key already. A view with no dimension has
    a few rows per partition: it is aggregated map-side first, and one task writes all its
    files.
    """
    from pyspark.sql import functions as F

    spark = events.sparkSession
    part = view_partitioning(view)
    keyed = bool(view.dimensions)
    tasks = max(1, min(len(touched), VIEW_TASKS))
    partitioned = events.withColumn(part.column, start_of("created_time", part.span_ms))
    if keyed:
        partitioned = partitioned.repartition(tasks, part.column)
    partitioned.createOrReplaceTempView("events_view")
    rows = spark.sql(view.batch_sql("events_view", carried=(part.column,)))
    base_files = base.partitions(view.name) if base else {}
    old_files = [spark_uri(layout, k) for start in touched for k in base_files.get(start, [])]
    if old_files:
        old = spark.read.schema(view_ddl(view)).parquet(*old_files)
        old = old.withColumn(part.column, start_of("window_start", part.span_ms))
        merged = rows.unionByName(old)
        rollup = [F.expr(e) for e in view.rollup_expressions()]
        rows = (
            (merged.repartition(tasks, part.column) if keyed else merged)
            .groupBy(part.column, *view.key_columns)
            .agg(*rollup)
        )
    if not keyed:
        rows = rows.coalesce(1)
    prefix = layout.view_prefix(version, view.name)
    with partial_aggregation(spark, enabled=not keyed):
        # Not sorted by key within a partition: readers sort on load (serving) or aggregate.
        rows.write.partitionBy(part.column).mode("overwrite").parquet(
            spark_uri(layout, prefix.rstrip("/"))
        )
    written = files_by_partition(layout, prefix)
    untouched = {start: keys for start, keys in base_files.items() if start not in written}
    return dict(sorted({**untouched, **written}.items()))


def run(settings: Settings, horizon_ms: int, version: str, run_id: str, full: bool = False) -> str:
    """Compute a complete version in the store; return its manifest's key.

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
    with heartbeat(layout, version):  # prune keeps an unfinished version while it beats
        return _run(layout, settings, horizon_ms, version, run_id, full, started, steps)


def _run(
    layout: Layout,
    settings: Settings,
    horizon_ms: int,
    version: str,
    run_id: str,
    full: bool,
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
        else incremental_base(layout, settings, horizon_ms)
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
        partitions = touched_partitions(touched)
        steps.done("count")
        files = {}
        for view in VIEWS:
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
        run_id=run_id,
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
    )
    layout.write_manifest(version, manifest)
    return manifest_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, required=True, help="exclusive ingest horizon, ms")
    parser.add_argument("--version", required=True, help="version id to write")
    parser.add_argument("--run-id", default="manual")
    parser.add_argument(
        "--full", action="store_true", help="recompute from the whole landing zone (rebuild)"
    )
    args = parser.parse_args()
    settings = Settings()
    # Compaction keeps every landing file this job may list until the job is done.
    with reading_landing(Layout.of(settings)):
        manifest = run(settings, args.horizon, args.version, args.run_id, args.full)
    print(json.dumps({"version": args.version, "manifest": manifest}))


if __name__ == "__main__":
    main()
