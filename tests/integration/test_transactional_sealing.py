"""Records from a transactional producer: every partition still seals once idle.

Each committed transaction leaves a commit marker in the partition: it takes an offset but is
never returned to the consumer, so the last record consumed stays one below the end offset.
Sealing judges "caught up" by the consumer's position, which moves past the marker.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from lambda_contracts.events import Transaction
from lambda_contracts.layout import Layout
from tests.support.pipeline import SpeedProcess, landed_rows, wait_watermark

pytestmark = pytest.mark.integration

BUCKET_MS = 2000


def test_partitions_written_in_transactions_seal_when_idle(make_settings) -> None:
    settings = make_settings(
        bucket_ms=BUCKET_MS, landing_flush_ms=200, idle_seal_grace_ms=200, partitions=3
    )
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        transactional_id=f"tx-test-{uuid.uuid4().hex[:8]}",
    )
    producer.init_transactions()
    stamps: list[int] = []
    for batch in range(3):
        producer.begin_transaction()
        futures = []
        for partition in (0, 1):  # partition 2 gets nothing at all
            for i in range(5):
                event = Transaction(
                    TransactionID=f"x{batch}-{partition}-{i}",
                    CreatedTime=int(time.time() * 1000),
                    SourceAccountID=f"a{partition}",
                    TargetAccountID="t",
                    Amount=Decimal("2.50"),
                )
                futures.append(
                    producer.send(
                        settings.topic, event.to_json_bytes(), event.key, partition=partition
                    )
                )
        producer.commit_transaction()
        stamps += [f.get(30).timestamp for f in futures]
    producer.close()

    with SpeedProcess(settings):
        newest_bucket_end = max(stamps) - max(stamps) % BUCKET_MS + BUCKET_MS
        wait_watermark(settings, newest_bucket_end, timeout=60)
    layout = Layout.of(settings)
    assert len(landed_rows(layout)) == len(stamps) == 30
    for partition in range(settings.partitions):
        progress = layout.read_progress(partition)
        assert progress is not None and progress.sealed_through_ms >= newest_bucket_end
