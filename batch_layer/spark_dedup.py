"""The recompute's dedup in Spark: landed copies → the events that count, and the index.

Steps 2 and 3 of ``batch_layer.spark_job``: the landed copies judged by the one dedup rule of
``lambda_contracts.dedup`` (:func:`deduplicate`, :func:`dedup_events`), seeded from the base's
dedup index (:func:`index_hits`, :func:`kept_index_files`), and this run's part of the index
(:func:`new_index_entries`); the crash replays are counted in the driver
(:func:`count_replays`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batch_layer.increment import Base
from batch_layer.inputs import spark_uri
from lambda_contracts.dedup import DEDUP_ORDER, RECORD_TIME, is_new_event, remembered_from
from lambda_contracts.landing_files import read_landing_file
from lambda_contracts.layout import LANDING_COLUMNS, Layout, landing_file_range

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

SPARK_TYPES = {"string": "STRING", "int64": "BIGINT", "int32": "INT"}
LANDING_DDL = ", ".join(f"{name} {SPARK_TYPES[kind]}" for name, kind in LANDING_COLUMNS)
EVENT_COLUMNS = [name for name, _ in LANDING_COLUMNS]
INDEX_DDL = "transaction_id STRING, last_kept_ts BIGINT"
BROADCAST_ROWS = 1_000_000  # ids this few are broadcast to a join (no shuffle of the other side)
ID_HASH = "id_hash"  # xxhash64 of the TransactionID: picks the ids the dedup fold must see
FOLD = "fold"  # 1 on the copies the dedup fold must see; the scratch copies are split by it
FOLDED = "folded"  # the fold's result, under the run's scratch prefix
# The scratch copies' ids are nearly all unique: a Parquet dictionary of them always overflows
# and is thrown away, so none is tried (measured: a 10M-row write 15 s → 12.5 s).
UNIQUE_IDS = {"parquet.enable.dictionary#transaction_id": "false"}
NO_KEPT_COPY = -(1 << 62)  # "no kept copy yet": every copy is new against it, without overflow


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


def empty_frame(spark: SparkSession, schema: str | StructType) -> DataFrame:
    """An empty DataFrame of a schema (``name TYPE, …`` or flat), made in the JVM.
    ``createDataFrame([])`` starts Python workers to convert no rows: about 4 s of a
    10M-event run, measured."""
    if not isinstance(schema, str):
        schema = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields)
    columns = (column.split() for column in schema.split(", "))
    return spark.range(0).selectExpr(*(f"CAST(NULL AS {kind}) AS {name}" for name, kind in columns))
