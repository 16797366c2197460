"""A record stamped in an ingest bucket already sealed is counted once, never lost.

Issue 32, item 3. Sealing trusts the brokers' clock less a grace; a leader whose clock went
back on a failover, or a follower that lagged past the grace, can still stamp a record below
a partition's seal. A sealed bucket may already be in a published batch version, which the
serving layer merges with speed rows at or above its horizon only: a record landed and counted
in that bucket was in no answer until a rebuild. Such a record is counted and landed in the
partition's first open bucket instead (the same stamp in both sinks), and shows in
``speed_late_records``.

The seal past the broker's clock is made by hand here (the progress of a previous owner that
sealed by a clock running ahead): the broker cannot be made to stamp in the past on demand.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from lambda_contracts.db import make_engine
from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout, PartitionProgress
from tests.support.pipeline import (
    SpeedProcess,
    free_port,
    landed_rows,
    speed_metric,
    speed_views,
    stored_offsets,
    wait_until,
)

pytestmark = pytest.mark.integration

BUCKET_MS = 2000


def test_a_record_stamped_in_a_sealed_bucket_is_counted_in_an_open_one(make_settings) -> None:
    settings = make_settings(
        bucket_ms=BUCKET_MS,
        landing_flush_ms=200,
        idle_seal_grace_ms=200,
        partitions=1,
        speed_metrics_port=free_port(),
    )
    layout = Layout.of(settings)
    sealed_through = int(time.time() * 1000) + 20 * BUCKET_MS
    open_from = sealed_through - sealed_through % BUCKET_MS
    layout.write_progress(PartitionProgress(0, 0, sealed_through))
    producer = KafkaProducer(**settings.kafka_client_config)
    amounts = [Decimal("1.25"), Decimal("2.50"), Decimal("4.00")]
    stamps = []
    for i, amount in enumerate(amounts):
        event = Transaction(
            TransactionID=f"late-{i}",
            CreatedTime=int(time.time() * 1000),
            SourceAccountID="late-src",
            TargetAccountID="late-dst",
            Amount=amount,
        )
        sent = producer.send(settings.topic, event.to_json_bytes(), event.key, partition=0)
        stamps.append(sent.get(30).timestamp)
    producer.close()
    assert max(stamps) < open_from  # stamped in buckets the partition has sealed

    with SpeedProcess(settings, metrics=True):
        engine = make_engine(settings.speed_store_url)
        wait_until(lambda: stored_offsets(engine, settings.topic) == {0: 3}, 60, "counted")
        wait_until(lambda: len(landed_rows(layout)) == 3, 60, "landed")
        late = speed_metric(settings, "speed_late_records_total")

    assert late == 3
    rows = landed_rows(layout)
    assert sorted(r["transaction_id"] for r in rows) == ["late-0", "late-1", "late-2"]
    assert all(r["kafka_ts"] >= open_from for r in rows), (rows, open_from)
    # In the speed view above the seal: the merge counts it while no batch holds it.
    minutes = speed_views(engine, min_bucket=open_from)["global_minute"]
    assert sum(m[0] for m in minutes.values()) == 3, minutes  # txn_count
    assert sum(m[1] for m in minutes.values()) == 775, minutes  # amount_sum, cents
    progress = layout.read_progress(0)
    assert progress is not None and progress.sealed_through_ms >= sealed_through
