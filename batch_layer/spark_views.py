"""The recompute's view writing in Spark: each view's touched partitions, merged with the base.

Step 4 of ``batch_layer.spark_job``: a view's rows come from the SQL derived from its
declaration (``View.batch_sql``); only the partitions (event-time hours, or days:
``view_partitioning``) the new events fall in are written (:func:`touched_partitions`,
:func:`write_view`), a file per partition, each merged with the base's rows of it; the other
partitions stay the base's files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pyarrow as pa

from batch_layer.increment import Base
from batch_layer.inputs import spark_uri
from lambda_contracts.batch_files import view_schema
from lambda_contracts.layout import VIEW_PARTITION_DIR, Layout, view_partitioning
from lambda_contracts.views import View

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

VIEW_TASKS = 64  # most tasks a view's partitions are shuffled into (see write_view)
BYPASS_PARTIAL = "spark.sql.execution.bypassPartialAggregation"  # Spark 4.3's switch


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


def touched_partitions(hours: list[int], views: Sequence[View]) -> dict[str, list[int]]:
    """Each view's partitions (their starts) that events in these event-time hours fall in."""
    return {
        view.name: sorted({view_partitioning(view).start(hour) for hour in hours}) for view in views
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
