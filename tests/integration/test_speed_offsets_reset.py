"""A recreated topic on the real broker: the speed layer halts instead of skipping silently,
and ``lambda-speed reset-offsets`` makes it count the new log exactly.

The new topic reuses the offsets the store has counted, so the landing zone holds two records
per (partition, offset) afterwards: the old topic's under the old ingest buckets and the new
one's under later buckets (``bucket_ms`` is 1 s and the new records are produced more than a
second after the old ones). The landing check is therefore keyed by (ingest bucket, partition,
offset): every valid event of both topics is landed once with its exact content, nothing else.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from infra.topics import ensure_topics
from lambda_contracts.buckets import ingest_bucket
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from speed_layer.reset import group_members
from tests.support.pipeline import (
    SpeedProcess,
    TruthRecord,
    end_offsets,
    expected_views,
    free_port,
    landed_rows,
    mixed_stream,
    open_transaction,
    produce,
    read_topic,
    run_cli,
    speed_views,
    stored_offsets,
    truth_rows,
    wait_caught_up,
    wait_until,
)

pytestmark = pytest.mark.integration


def recreate_topic(settings: Settings) -> None:
    """Delete the transactions topic, wait until it is gone, create it again (empty)."""
    admin = KafkaAdminClient(**settings.kafka_admin_config)
    try:
        admin.delete_topics([settings.topic])
        wait_until(lambda: settings.topic not in admin.list_topics(), 60, "the topic deleted")
    finally:
        admin.close()
    ensure_topics(settings)  # waits until every partition has a leader


def reset_offsets(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``lambda-speed reset-offsets ARGS`` as an operator runs it."""
    return run_cli(settings, "lambda-speed", "reset-offsets", *args)


def readyz(settings: Settings) -> tuple[int, dict[str, Any]] | None:
    url = f"http://127.0.0.1:{settings.speed_metrics_port}/readyz"
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.status_code, response.json()


def all_halted(settings: Settings) -> bool:
    answer = readyz(settings)
    if answer is None:
        return False
    _, body = answer
    return body.get("status") == "halted" and len(body["halted"]) == settings.partitions


def committed_offsets(settings: Settings) -> dict[int, int | None]:
    """The speed group's committed offsets in Kafka."""
    consumer = KafkaConsumer(
        **settings.kafka_client_config,
        group_id=settings.speed_group,
        enable_auto_commit=False,
    )
    try:
        tps = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        return {tp.partition: consumer.committed(tp, timeout_ms=30_000) for tp in tps}
    finally:
        consumer.close(autocommit=False)


def landed_by_bucket(settings: Settings) -> dict[tuple[int, int, int], list[dict[str, Any]]]:
    copies: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for row in landed_rows(Layout.of(settings)):
        bucket = ingest_bucket(row["kafka_ts"], settings.bucket_ms)
        copies.setdefault((bucket, row["kafka_partition"], row["kafka_offset"]), []).append(row)
    return copies


def assert_both_topics_landed_once(settings: Settings, truth: list[TruthRecord]) -> None:
    expected = {
        (
            ingest_bucket(r["kafka_ts"], settings.bucket_ms),
            r["kafka_partition"],
            r["kafka_offset"],
        ): r
        for r in truth_rows(truth)
    }
    assert len(expected) == len(truth_rows(truth))  # (bucket, partition, offset) is a key
    copies = landed_by_bucket(settings)
    assert copies.keys() == expected.keys()
    assert all(all(c == expected[k] for c in rows) for k, rows in copies.items())


def test_recreated_topic_halts_until_the_offsets_are_reset(
    make_settings, store_url, tmp_path: Path
) -> None:
    settings = make_settings(
        speed_store_url=store_url,
        bucket_ms=1000,
        speed_metrics_port=free_port(),
        speed_unhealthy_after_s=3,
        speed_exit_after_s=6,
    )
    engine = make_engine(settings.speed_store_url)
    old = produce(settings, tmp_path / "old.jsonl", "--count", "2000", *mixed_stream(0, 60))
    with SpeedProcess(settings, metrics=True) as speed:
        wait_caught_up(settings, engine)
        assert speed_views(engine) == expected_views(old)
        assert speed.terminate() == 0
    views_before, offsets_before = speed_views(engine), stored_offsets(engine, settings.topic)

    recreate_topic(settings)
    time.sleep(1.5)  # the new records fall into later ingest buckets than every old one
    new = produce(
        settings, tmp_path / "new.jsonl", "--count", "400", "--seed", "7", *mixed_stream(0, 60)
    )
    new_ends = end_offsets(settings)
    # The premise of a silent skip: the new log is shorter than what the store counted, so
    # the old offsets are out of range and the broker would move the consumer to 0.
    assert all(new_ends[p] < offsets_before[p] for p in range(settings.partitions))
    first_new_bucket = ingest_bucket(min(r.timestamp for r in new), settings.bucket_ms)
    assert first_new_bucket > ingest_bucket(max(r.timestamp for r in old), settings.bucket_ms)

    with SpeedProcess(settings, metrics=True) as speed:
        wait_until(lambda: all_halted(settings), 60, "every partition halted")
        time.sleep(settings.speed_exit_after_s + 2)  # a halt is no stall: no exit, no restart
        assert speed.alive()
        answer = readyz(settings)
        assert answer is not None and answer[0] == 503 and answer[1]["status"] == "halted"
        assert "recreated or truncated" in answer[1]["reason"]
        assert speed_views(engine) == views_before
        assert stored_offsets(engine, settings.topic) == offsets_before
        assert not [k for k in landed_by_bucket(settings) if k[0] >= first_new_bucket]
        assert speed.terminate() == 0

    reset = reset_offsets(settings, "--all", "--to-beginning")
    assert reset.returncode == 0, reset.stderr
    for p in range(settings.partitions):
        assert f"partition {p}: stored {offsets_before[p]} → 0" in reset.stdout
    assert stored_offsets(engine, settings.topic) == dict.fromkeys(range(settings.partitions), 0)
    assert committed_offsets(settings) == dict.fromkeys(range(settings.partitions), 0)

    with SpeedProcess(settings, metrics=True) as speed:
        wait_caught_up(settings, engine)
        wait_until(lambda: (readyz(settings) or (0, {}))[1].get("status") == "ok", 30, "ok")
        assert speed_views(engine) == expected_views(old + new)
        assert speed.terminate() == 0
    assert_both_topics_landed_once(settings, old + new)
    malformed = [r for r in old + new if r.kind == "malformed"]
    assert len(read_topic(settings, settings.dlq_topic)) == len(malformed)


def test_reset_refuses_while_a_speed_process_runs(make_settings) -> None:
    settings = make_settings()
    engine = make_engine(settings.speed_store_url)
    with SpeedProcess(settings):
        wait_until(lambda: bool(group_members(settings)), 60, "the speed process in its group")
        reset = reset_offsets(settings, "--partition", "0", "--to-end")
    assert reset.returncode == 2
    assert "live members" in reset.stderr and "make down" in reset.stderr
    assert stored_offsets(engine, settings.topic) == {}


def test_reset_to_end_stops_where_read_committed_consumers_stop(
    make_settings, tmp_path: Path
) -> None:
    """A transaction open at the reset: the end the speed processes read to is its first
    record (the last stable offset), not the high watermark. Reset there, the process does
    not halt, and counts the transaction's record once it commits."""
    settings = make_settings(partitions=1, speed_metrics_port=free_port())
    engine = make_engine(settings.speed_store_url)
    truth = produce(settings, tmp_path / "t.jsonl", "--count", "20")
    with SpeedProcess(settings) as speed:  # the group has run before the reset, as it would
        wait_until(lambda: stored_offsets(engine, settings.topic) == {0: 20}, 60, "counted")
        assert speed.terminate() == 0
    producer, _ = open_transaction(settings, "held-1", "held", "7.00")
    stable = len(truth)  # the open transaction's record sits at the last stable offset
    assert end_offsets(settings) == {0: stable + 1}  # the high watermark is past it

    reset = reset_offsets(settings, "--all", "--to-end")
    assert reset.returncode == 0, reset.stderr
    assert stored_offsets(engine, settings.topic) == {0: stable}

    with SpeedProcess(settings, metrics=True) as speed:
        producer.commit_transaction()
        producer.close()
        wait_until(
            lambda: stored_offsets(engine, settings.topic) == {0: stable + 1}, 60, "the held one"
        )
        answer = readyz(settings)
        assert answer is not None and answer[1]["status"] != "halted", answer
        views = speed_views(engine)
        held_rows = [m for k, m in views["account_minute"].items() if "held" in k]
        assert len(held_rows) == 1, views
        assert speed.terminate() == 0
