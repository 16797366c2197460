"""The speed watermark holds for every partition: a stalled one holds it back."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from lambda_contracts.db import make_engine
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import partition_state
from serving.main import create_app
from serving.watermark import EndOffsetsReading, speed_watermark_ms

NOW = 1_800_000_000_000


def state(partition: int, next_offset: int, max_kafka_ts: int) -> dict[str, int]:
    return {"kafka_partition": partition, "next_offset": next_offset, "max_kafka_ts": max_kafka_ts}


def test_minimum_over_partitions_with_caught_up_ones_counting_as_read_time() -> None:
    states = [state(0, 100, NOW - 1_000), state(1, 50, NOW - 60_000), state(2, 7, NOW - 5_000)]
    ends = EndOffsetsReading({0: 100, 1: 80, 2: 7}, read_at_ms=NOW)
    # Partition 1 is stalled 30 records behind: everything is counted only up to its time.
    assert speed_watermark_ms(states, 3, ends) == NOW - 60_000
    caught_up = EndOffsetsReading({0: 100, 1: 50, 2: 7}, read_at_ms=NOW)
    assert speed_watermark_ms(states, 3, caught_up) == NOW


def test_an_uncounted_partition_with_records_makes_it_unknown() -> None:
    states = [state(0, 100, NOW)]
    assert speed_watermark_ms(states, 2, EndOffsetsReading({0: 100, 1: 3}, NOW)) is None
    # An empty partition that nobody has counted yet is caught up.
    assert speed_watermark_ms(states, 2, EndOffsetsReading({0: 100, 1: 0}, NOW)) == NOW


def test_without_end_offsets_the_stored_times_are_a_lower_bound() -> None:
    states = [state(0, 100, NOW - 1_000), state(1, 50, NOW - 60_000)]
    assert speed_watermark_ms(states, 2, None) == NOW - 60_000
    assert speed_watermark_ms(states, 3, None) is None


def test_api_meta_and_freshness_report_the_stalled_partition(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, partitions=2, topic="tx")
    engine = make_engine(settings.speed_store_url)
    with engine.begin() as conn:
        conn.execute(
            partition_state.insert(),
            [  # partition 1 stalled 380 records behind, 90 s of broker time ago
                {"topic": "tx", **state(0, next_offset=500, max_kafka_ts=NOW)},
                {"topic": "tx", **state(1, next_offset=20, max_kafka_ts=NOW - 90_000)},
            ],
        )
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.end_offsets.get = lambda: EndOffsetsReading({0: 500, 1: 400}, NOW + 5)
        totals = client.get("/v1/totals", params={"start": 0, "end": NOW}).json()
        assert totals["meta"]["speed_watermark_ms"] == NOW - 90_000
        assert totals["meta"]["speed_watermark"].startswith("2027-01-15T07:")
        fresh = client.get("/v1/freshness").json()
        assert fresh["speed_watermark_ms"] == NOW - 90_000
        assert [p["lag"] for p in fresh["speed_lag"]] == [0, 380]
    engine.dispose()
