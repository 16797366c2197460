"""The group's committed offsets never pass what is durable (issue 32, item 5).

After a restart the committed offset is read back as how far a partition was read, and a log
start at or below it passes the check for records that expired uncounted. So a commit must
never name records that are only polled, in a transaction in flight, or in a landing buffer:
a crash there loses them from the sink, and if retention then removes them the gap would pass
unseen. Here the landing zone flushes every 8 s while the stream runs: the consumer's position
runs seconds ahead of the durable landing progress, and every committed offset read from the
real broker must be at or below the progress (and the store's offset) read after it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from tests.support.pipeline import (
    BIN,
    SpeedProcess,
    env_for,
    stored_offsets,
    wait_caught_up,
    wait_until,
)

pytestmark = pytest.mark.integration


def committed_offsets(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of ``topic`` ({} while the coordinator is not there)."""
    try:
        offsets = admin.list_consumer_group_offsets(group)
    except KafkaError:  # the group coordinator starts with the group's first member
        return {}
    mine = {tp: m for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0}
    return {tp.partition: m.offset for tp, m in mine.items()}


def test_committed_offsets_never_pass_the_durable_cursors(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(landing_flush_ms=8_000, partitions=2)
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    producer = subprocess.Popen(
        [str(BIN / "lambda-produce"), "--quiet", "--rate", "300", "--count", "6000"],
        env=env_for(settings),
    )
    checks, highest = 0, 0
    try:
        with SpeedProcess(settings):
            while producer.poll() is None:
                committed = committed_offsets(admin, settings.speed_group, settings.topic)
                landed = {
                    p: (progress.next_offset if progress else 0)
                    for p, progress in enumerate(layout.read_all_progress(settings.partitions))
                }
                stored = stored_offsets(engine, settings.topic)
                for partition, offset in committed.items():
                    checks += 1
                    assert offset <= landed[partition], (partition, offset, landed)
                    assert offset <= stored.get(partition, 0), (partition, offset, stored)
                    highest = max(highest, offset)
                time.sleep(0.3)
            assert producer.wait() == 0
            wait_caught_up(settings, engine)
            # Once everything is durable the commits catch up with the log.
            ends = stored_offsets(engine, settings.topic)

            def committed_to_the_end() -> bool:
                got = committed_offsets(admin, settings.speed_group, settings.topic)
                return all(got.get(p, -1) >= end for p, end in ends.items())

            wait_until(committed_to_the_end, 60, "commits at the durable end")
    finally:
        producer.kill()
        admin.close()
        engine.dispose()
    assert checks > 20 and highest > 0  # commits moved while the stream ran
