"""A speed store played and read back in tests: random poll batches over partitioned logs,
stale (zombie) replays and dedup evictions between them; every speed row as plain tuples."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.store_schema import ViewTables, view_tables
from lambda_contracts.views import VIEWS, View
from speed_layer.store import PartitionBatch, SpeedStore
from speed_layer.store_retry import FencedError
from tests.support.blocks import block_of
from tests.support.declared import COLUMNS, WINDOW_MS, reference
from tests.support.oracle import kept_rows
from tests.support.streams import Record, all_records

BUCKET_MS = 1000  # ingest buckets of the random logs (tests.support.streams): several per log
TOPIC = "tx"


def stored_views(engine: Engine) -> dict[str, dict[tuple[Any, ...], tuple[int, ...]]]:
    """Every speed row as {view: {(key..., ingest_bucket): measures}}."""
    out = {}
    with engine.connect() as conn:
        for view in VIEWS:
            table = view_tables[view.name]
            key_cols = [table.c[c] for c in (*view.key_columns, "ingest_bucket")]
            n = len(key_cols)
            rows = conn.execute(select(*key_cols, *(table.c[m] for m in view.measure_names)))
            out[view.name] = {tuple(r[:n]): tuple(r[n:]) for r in rows}
    return out


def speed_rows(engine: Engine, tables: ViewTables, view: View) -> list[tuple[tuple, tuple]]:
    """The view's speed rows as (key, measures), one per key, window and ingest bucket."""
    table = tables[view.name]
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                *(table.c[c] for c in view.key_columns), *(table.c[m] for m in view.measure_names)
            )
        ).all()
    n = len(view.key_columns)
    return [(tuple(r[:n]), tuple(r[n:])) for r in rows]


def batch_of(log: list[Record], partition: int, start: int | None, stop: int) -> PartitionBatch:
    rows = log[start or 0 : stop]
    return PartitionBatch(
        partition=partition,
        expected_offset=start,
        next_offset=stop,
        rows=block_of(rows),
        max_kafka_ts=max((r["kafka_ts"] for r in rows), default=0),
    )


def play(store: SpeedStore, logs: dict[int, list[Record]], data: st.DataObject) -> None:
    """Consume every log to its end in random poll batches, with stale (zombie) replays and
    dedup evictions in between (the consumer runs one every minute, whatever was applied)."""
    applied: list[PartitionBatch] = []
    while True:
        stored = store.load_offsets()
        open_parts = [p for p, log in logs.items() if stored.get(p, 0) < len(log)]
        if not open_parts:
            return
        if applied and data.draw(st.booleans(), label="replay a committed batch"):
            stale = data.draw(st.sampled_from(applied), label="stale batch")
            with pytest.raises(FencedError):
                store.apply([stale])
        chosen = data.draw(
            st.lists(st.sampled_from(open_parts), min_size=1, unique=True), label="partitions"
        )
        batches = []
        for p in chosen:
            start = stored.get(p)
            size = data.draw(st.integers(1, 8), label="batch size")
            batches.append(batch_of(logs[p], p, start, min(len(logs[p]), (start or 0) + size)))
        store.apply(batches)
        applied += [b for b in batches if b.rows]
        if data.draw(st.booleans(), label="expire dedup state"):
            store.expire_dedup()


def assert_declared_equal_reference(
    store: SpeedStore,
    declared: DeclaredView,
    logs: dict[int, list[Record]],
    data: st.DataObject,
    dedup_ms: int,
) -> None:
    """Play the logs into ``store`` (deployed with ``declared``); its rows of the declared view,
    at the stored shape and over the whole range, equal the reference over the kept records."""
    store.deploy()
    play(store, logs, data)
    tables = ViewTables(store.views.computed)
    totals = speed_rows(store.engine, tables, declared.totals)
    sets = {
        s.label: [k for k, _ in speed_rows(store.engine, tables, s.view)] for s in declared.sets
    }
    declaration = declared.declaration
    kept = kept_rows(all_records(logs), dedup_ms)
    dims = tuple(sorted(declaration.dimensions))
    window_ms = WINDOW_MS[declaration.window]
    columns = tuple(COLUMNS[d] for d in dims)
    assert declared.answer(totals, sets, columns, window_ms) == reference(
        declaration, kept, dims, window_ms
    )
    assert declared.answer(totals, sets) == reference(declaration, kept, (), None)
