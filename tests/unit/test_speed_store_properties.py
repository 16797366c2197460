"""The speed store against the independent oracle: random logs with duplicates inside and
outside a small dedup horizon, conflicting copies, late events, crash replays, timestamps out of
order across partitions, any interleaving of partitions across poll batches, and dedup
eviction (by record time) at any moment between them.

No broker: the test plays the consumer (batches from the stored offsets) on in-memory SQLite.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from lambda_contracts.db import make_engine
from lambda_contracts.store_schema import partition_state
from speed_layer.store import SpeedStore
from tests.support.oracle import oracle_views
from tests.support.speed_store import BUCKET_MS, TOPIC, play, stored_views
from tests.support.streams import Record, all_records, partitioned_logs

DEDUP_MS = 1500  # small against the logs' time span: copies fall on both sides of it


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs=partitioned_logs(max_skew_ms=3 * DEDUP_MS, gap_unit_ms=100), data=st.data())
def test_speed_store_equals_the_oracle(logs: dict[int, list[Record]], data: st.DataObject) -> None:
    engine = make_engine("sqlite://")
    try:
        store = SpeedStore(engine, TOPIC, BUCKET_MS, DEDUP_MS)
        play(store, logs, data)
        records = all_records(logs)
        assert stored_views(engine) == oracle_views(records, DEDUP_MS, BUCKET_MS)
        with engine.connect() as conn:
            counted = conn.execute(
                select(partition_state.c.events, partition_state.c.duplicates)
            ).all()
        expected_events = oracle_views(records, DEDUP_MS)["global_minute"]
        assert sum(e for e, _ in counted) == sum(v[0] for v in expected_events.values())
        assert sum(e + d for e, d in counted) == len(records)
    finally:
        engine.dispose()
