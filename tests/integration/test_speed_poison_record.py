"""One record the store refuses never stops its partition (real broker, real PostgreSQL).

A CHECK constraint on the account view refuses one source account, as a data error would. Every
record of that account goes to the DLQ with a ``store:`` reason; the rest of the stream is
counted exactly, and the process keeps running throughout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from lambda_contracts.db import make_engine
from lambda_contracts.store_schema import partition_state
from tests.support.pipeline import (
    SpeedProcess,
    expected_views,
    mixed_stream,
    produce,
    read_topic,
    speed_views,
    wait_caught_up,
)
from tests.support.services import Postgres

pytestmark = pytest.mark.integration


def test_a_record_the_store_refuses_goes_to_the_dlq_and_the_rest_counts(
    make_settings, postgres: Postgres, tmp_path: Path
) -> None:
    settings = make_settings(speed_store_url=postgres.new_database())
    engine = make_engine(settings.speed_store_url)  # creates the tables before the constraint
    truth = produce(settings, tmp_path / "t1.jsonl", "--count", "3000", *mixed_stream(0, 40))
    accounts = Counter(r.event.source_account_id for r in truth if r.event)
    poison = next(a for a, n in sorted(accounts.items()) if 3 <= n <= 200)
    with engine.begin() as conn:
        conn.execute(
            text(
                "ALTER TABLE speed_account_minute ADD CONSTRAINT refuse_one "
                f"CHECK (source_account_id <> '{poison}')"
            )
        )

    speed = SpeedProcess(settings).start()
    wait_caught_up(settings, engine)
    # More records after the refusals: the partitions go on.
    truth += produce(settings, tmp_path / "t2.jsonl", "--count", "1000", *mixed_stream(0, 40))
    wait_caught_up(settings, engine)
    assert speed.alive(), "a refused record must not stop the process"

    refused = {
        (r.partition, r.offset) for r in truth if r.event and r.event.source_account_id == poison
    }
    malformed = {(r.partition, r.offset) for r in truth if r.event is None}
    kept = [r for r in truth if (r.partition, r.offset) not in refused]
    assert speed_views(engine) == expected_views(kept)

    dead = read_topic(settings, settings.dlq_topic)
    reasons = {}
    for rec in dead:
        headers = dict(rec.headers)
        reasons[(int(headers["origin.partition"]), int(headers["origin.offset"]))] = headers[
            "reason"
        ].decode()
    assert reasons.keys() == refused | malformed
    for origin in refused:
        assert reasons[origin].startswith("store: ") and "refuse_one" in reasons[origin]
    with engine.connect() as conn:
        rejected = conn.execute(
            select(func.sum(partition_state.c.rejected)).where(
                partition_state.c.topic == settings.topic
            )
        ).scalar()
    assert rejected == len(refused) + len(malformed)
    assert speed.terminate() == 0
