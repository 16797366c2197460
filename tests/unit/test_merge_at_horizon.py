"""The lambda law: for any bucket-aligned horizon H, batch(< H) merged with speed(>= H) equals
the oracle over everything — on random logs with duplicates, conflicts and late events.

The batch side is the declaration's ``batch_sql`` on DuckDB over the landing rows below H,
deduplicated as the Spark job does (first copy in log order); the speed side is the real speed
store read by the real serving reader, merged by the real serving merge. No broker, no Spark.
"""

from __future__ import annotations

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_contracts.db import make_engine
from lambda_contracts.layout import LANDING_COLUMNS
from lambda_contracts.views import VIEWS, Key, Measures, View, keyed
from serving.merge import merge_rows
from serving.row_query import RowQuery
from serving.speed_store import SpeedReader
from speed_layer.store import SpeedStore
from tests.support.oracle import oracle_views
from tests.support.speed_store import BUCKET_MS, TOPIC, play
from tests.support.streams import START_TS, Record, all_records, partitioned_logs

# The batch job dedups over everything below H (no horizon yet): keep copies within D here.
DEDUP_MS = 10**9
EVENT_COLUMNS = [name for name, _ in LANDING_COLUMNS]
DUCK_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER"}


def batch_rows(records: list[Record], horizon: int, view: View) -> list[tuple[Key, Measures]]:
    """The batch view below ``horizon`` on DuckDB: first copy in log order, then batch_sql."""
    con = duckdb.connect()
    ddl = ", ".join(f"{name} {DUCK_TYPES[kind]}" for name, kind in LANDING_COLUMNS)
    con.execute(f"CREATE TABLE landing ({ddl})")
    below = [tuple(r[c] for c in EVENT_COLUMNS) for r in records if r["kafka_ts"] < horizon]
    if below:
        con.executemany(
            f"INSERT INTO landing VALUES ({', '.join('?' * len(EVENT_COLUMNS))})", below
        )
    cols = ", ".join(f"first.{c} AS {c}" for c in EVENT_COLUMNS)
    con.execute(
        f"CREATE TABLE events AS SELECT {cols} FROM (SELECT arg_min(landing, "
        "(kafka_ts, kafka_partition, kafka_offset)) AS first FROM landing GROUP BY transaction_id)"
    )
    rows = con.execute(view.batch_sql("events")).fetchall()
    con.close()
    return keyed(rows, len(view.key_columns))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs=partitioned_logs(), buckets=st.integers(0, 30), data=st.data())
def test_batch_below_h_merged_with_speed_from_h_equals_the_oracle(
    logs: dict[int, list[Record]], buckets: int, data: st.DataObject
) -> None:
    horizon = START_TS - START_TS % BUCKET_MS + buckets * BUCKET_MS
    engine = make_engine("sqlite://")
    try:
        play(SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS), logs, data)
        reader = SpeedReader(engine, TOPIC)
        records = all_records(logs)
        expected = oracle_views(records, DEDUP_MS)
        for view in VIEWS:
            speed = reader.rows(RowQuery.of(view, 0, 10**15, view.key_columns), horizon)
            merged = merge_rows(view, batch_rows(records, horizon, view), speed)
            assert merged == expected[view.name], f"{view.name} at H={horizon}"
    finally:
        engine.dispose()
