"""Declared views in the speed store: exact against the reference over random logs, and
fenced by the deployment in force.

No broker: the test plays the consumer (batches from the stored offsets, stale replays, dedup
evictions) on in-memory SQLite, as ``test_speed_store_properties`` does for the built-in views.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select

from lambda_contracts.db import make_engine
from lambda_contracts.declared_views import DeclaredView
from lambda_contracts.store_schema import ViewTables, view_versions
from lambda_contracts.view_declarations import ViewDeclaration
from lambda_contracts.view_set import ViewSet
from speed_layer.store import PartitionBatch, SpeedStore
from speed_layer.store_deploy import RETIRED_GRACE_MS, StaleDeploymentError, drop_retired
from tests.support.blocks import block_of
from tests.support.declared import declarations
from tests.support.speed_store import (
    BUCKET_MS,
    TOPIC,
    assert_declared_equal_reference,
    speed_rows,
)
from tests.support.streams import Record, partitioned_logs

DEDUP_MS = 1500


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logs=partitioned_logs(max_skew_ms=3 * DEDUP_MS, gap_unit_ms=100),
    declaration=declarations(),
    data=st.data(),
)
def test_declared_views_in_the_speed_store_equal_the_reference(
    logs: dict[int, list[Record]], declaration: ViewDeclaration, data: st.DataObject
) -> None:
    engine = make_engine("sqlite://")
    try:
        declared = DeclaredView.of(declaration)
        store = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((declared,)))
        assert_declared_equal_reference(store, declared, logs, data, DEDUP_MS)
    finally:
        engine.dispose()


RECEIVED = ViewDeclaration(
    name="received", dimensions=("TargetAccountID",), window="hour", measures=("count", "sum")
)


def event(offset: int, ts: int) -> dict[str, Any]:
    return {
        "transaction_id": f"t{offset}",
        "created_time": ts,
        "source_account_id": "a",
        "target_account_id": "b",
        "amount_cents": 100,
        "kafka_partition": 0,
        "kafka_offset": offset,
        "kafka_ts": ts,
    }


def batch(start: int | None, stop: int) -> PartitionBatch:
    rows = [event(o, 1_000_000 + o) for o in range(start or 0, stop)]
    return PartitionBatch(0, start, stop, block_of(rows), max_kafka_ts=rows[-1]["kafka_ts"])


def test_a_deploy_records_where_each_version_starts_and_fences_older_processes() -> None:
    engine = make_engine("sqlite://")
    old = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS)  # the built-in views only
    old.deploy()
    old.apply([batch(None, 3)])
    new_views = ViewSet((DeclaredView.of(RECEIVED),))
    new = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, new_views)
    deployed = new.deploy()
    assert deployed.added == (f"received@{RECEIVED.version}",)
    assert new.deploy().added == ()  # the same file again: nothing to do
    with engine.connect() as conn:
        (positions,) = conn.execute(select(view_versions.c.from_positions)).one()
    assert json.loads(positions) == {"0": [3, 1_000_002]}
    with pytest.raises(StaleDeploymentError, match="restarting on the current file"):
        old.apply([batch(3, 5)])
    assert old.load_offsets() == {0: 3}, "the stale transaction must not commit"
    new.apply([batch(3, 5)])
    tables = ViewTables(new_views.computed)
    totals = speed_rows(engine, tables, DeclaredView.of(RECEIVED).totals)
    assert sum(m[0] for _, m in totals) == 2, "only the records from the deploy on"

    back = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS).deploy()  # the file emptied
    assert back.retired == (f"received@{RECEIVED.version}",)
    again = new.deploy().added  # and declared again: its rows had a gap, so it starts over
    assert again == (f"received@{RECEIVED.version}",)
    assert speed_rows(engine, tables, DeclaredView.of(RECEIVED).totals) == []


CHANGED = ViewDeclaration(
    name="received",
    dimensions=("TargetAccountID",),
    window="hour",
    measures=("count", "sum"),
    amount_min="1.00",
)


def test_a_changed_views_serving_version_is_computed_until_its_successor_serves() -> None:
    engine = make_engine("sqlite://")
    first = DeclaredView.of(RECEIVED)
    second = DeclaredView.of(CHANGED)
    SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((first,))).deploy()
    serving = {first.totals.name}

    def serves(row: dict[str, Any]) -> bool:
        return row["storage_name"] in serving

    store = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((second,)))
    deployed = store.deploy(serves)
    assert deployed.retired == () and deployed.views.previous == (first,)
    store.apply([batch(None, 2)])
    tables = ViewTables(store.views.computed)
    for view in (first.totals, second.totals):  # both versions count the new records
        assert sum(m[0] for _, m in speed_rows(engine, tables, view)) == 2, view.name

    serving = {first.totals.name, second.totals.name}  # the successor serves: retire the first
    again = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((second,))).deploy(serves)
    assert again.retired == (f"received@{RECEIVED.version}",)
    assert again.views.previous == ()


def test_a_changed_view_whose_version_does_not_serve_is_replaced_at_once() -> None:
    engine = make_engine("sqlite://")
    SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((DeclaredView.of(RECEIVED),))).deploy()
    store = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((DeclaredView.of(CHANGED),)))
    deployed = store.deploy(lambda row: False)
    assert deployed.retired == (f"received@{RECEIVED.version}",)
    assert deployed.views.previous == ()


def test_a_retired_versions_tables_are_dropped_after_the_grace() -> None:
    engine = make_engine("sqlite://")
    received = DeclaredView.of(RECEIVED)
    SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((received,))).deploy()
    names = {f"speed_{v.name}" for v in received.computed}
    assert names <= set(inspect(engine).get_table_names())
    SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS).deploy()  # the view removed: retired
    assert drop_retired(engine, now_ms=int(time.time() * 1000)) == []  # within the grace
    later = int(time.time() * 1000) + RETIRED_GRACE_MS + 1
    assert set(drop_retired(engine, now_ms=later)) == names
    assert not names & set(inspect(engine).get_table_names())
    assert drop_retired(engine, now_ms=later) == []
    redeployed = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS, ViewSet((received,))).deploy()
    assert redeployed.added == (f"received@{RECEIVED.version}",)  # built again, from scratch
    assert names <= set(inspect(engine).get_table_names())
