"""On S3 storage, an answer is exact across a publish followed at once by expiry (issue 32,
item 12): serving's per-request check must see the new CURRENT, not a cached reading of it.

keep=1: the publish of v2 is followed by the deletion of every speed row below H2. A request
that still computes on v1 (H1 < H2) then misses the events of [H1, H2); the check after the
computation must notice that CURRENT moved and the speed floor passed H1 (on S3: reading both
as of now, not cached readings), and redo it on v2. Real versitygw, real DuckDB
batch store, real SQLite speed store; the oracle is the plain-Python one the cache tests use
(``tests.support.two_versions``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import delete

from batch_layer.retention import raise_speed_floor
from lambda_contracts.layout import BatchPointer, Layout
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import VIEWS
from tests.support.stores import s3_store
from tests.support.two_versions import (
    BUCKET,
    H2,
    HORIZON,
    RANGES,
    oracle,
    serving_over,
    summary_of,
)

pytestmark = pytest.mark.integration


def move_current(layout: Layout, version: str) -> None:
    pointer = BatchPointer(version, HORIZON[version], int(time.time() * 1000))
    assert layout.swap_current(pointer, layout.read_current_versioned()[1])


def test_an_answer_right_after_a_publish_and_expiry_on_s3_is_exact(
    s3_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, partitions=1, bucket_ms=BUCKET)
    layout = Layout(tmp_path, s3_store(s3_server))
    queries = serving_over(settings, layout, ("v1", "v2"))
    engine = queries.speed.engine
    start, end = RANGES[0]
    move_current(layout, "v1")
    snap, value = queries.consistent(lambda s: queries.summary(s, start, end))
    assert value == summary_of(oracle("v1", start, end, None))

    move_current(layout, "v2")  # publish, then expiry with keep=1: every row below H2 goes
    raise_speed_floor(layout, lambda: H2)  # expiry raises the floor before it deletes
    with engine.begin() as conn:
        for view in VIEWS:
            table = view_tables[view.name]
            conn.execute(delete(table).where(table.c.ingest_bucket < H2))
    snap, value = queries.consistent(lambda s: queries.summary(s, start, end))
    assert value == summary_of(oracle("v2", start, end, None))
    assert snap.pointer is not None and snap.pointer.version == "v2"
    engine.dispose()
