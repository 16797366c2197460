"""The speed layer against the real broker and real SQLite/PostgreSQL: exact, whatever fails."""

from __future__ import annotations

import random
import signal
import time
import uuid
from pathlib import Path

import pytest

from lambda_contracts.db import make_engine
from lambda_contracts.events import Rejection, parse_event
from tests.support.pipeline import (
    SpeedProcess,
    assert_landing_holds_every_valid_event_once,
    expected_views,
    mixed_stream,
    read_topic,
    read_truth,
    speed_views,
    start_producer,
    stored_offsets,
    wait_caught_up,
    wait_until,
)

pytestmark = pytest.mark.integration


def s3_storage(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for a master dataset under a fresh prefix of the test S3 server; its
    credentials in the environment, where the speed processes find them."""
    server = request.getfixturevalue("s3_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    return {
        "storage_url": f"s3://{server.buckets[0]}/speed-{uuid.uuid4().hex[:8]}",
        "s3_endpoint": server.endpoint,
    }


def test_aggregates_dlq_and_landing_are_exact(make_settings, store_url, tmp_path: Path) -> None:
    settings = make_settings(speed_store_url=store_url)
    truth_file = tmp_path / "truth.jsonl"
    producer = start_producer(settings, truth_file, "--count", "6000", *mixed_stream(0, 60))
    assert producer.wait(300) == 0
    truth = read_truth(truth_file)
    kinds = {r.kind for r in truth}
    assert {"valid", "duplicate", "conflict", "late", "malformed"} <= kinds

    speed = SpeedProcess(settings).start()
    engine = make_engine(settings.speed_store_url)
    wait_caught_up(settings, engine)
    assert speed_views(engine) == expected_views(truth)
    assert speed.terminate() == 0, "SIGTERM must end the process cleanly"

    dead = read_topic(settings, settings.dlq_topic)
    malformed = {(r.partition, r.offset): r for r in truth if r.kind == "malformed"}
    by_origin = {}
    for rec in dead:
        headers = dict(rec.headers)
        origin = (int(headers["origin.partition"]), int(headers["origin.offset"]))
        by_origin[origin] = rec
        expected_reason = parse_event(malformed[origin].value)
        assert isinstance(expected_reason, Rejection)
        assert headers["reason"].decode() == expected_reason.reason
        assert headers["origin.topic"].decode() == settings.topic
        assert rec.value == malformed[origin].value
    assert len(dead) == len(malformed) and by_origin.keys() == malformed.keys()
    assert_landing_holds_every_valid_event_once(settings, truth)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    make_settings, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Also with the landing zone on S3 (versitygw), where a file is one PUT and a kill can
    land between a file's PUT and its progress record's."""
    storage = s3_storage(request) if backend == "s3" else {}
    settings = make_settings(landing_flush_ms=300, **storage)
    truth_file = tmp_path / "truth.jsonl"
    producer = start_producer(settings, truth_file, "--count", "24000", *mixed_stream(2000, 60))
    rng = random.Random(1234)
    for _ in range(5):
        speed = SpeedProcess(settings).start()
        time.sleep(rng.uniform(1.0, 3.0))
        speed.kill()
    assert producer.wait(300) == 0
    speed = SpeedProcess(settings).start()
    engine = make_engine(settings.speed_store_url)
    wait_caught_up(settings, engine)
    truth = read_truth(truth_file)
    assert speed_views(engine) == expected_views(truth)
    assert speed.terminate() == 0
    assert_landing_holds_every_valid_event_once(settings, truth)
    if backend == "s3":  # it all went to S3
        assert not list(settings.data_dir.glob("landing/**/*.parquet"))


def test_two_processes_one_killed_then_restarted(make_settings, store_url, tmp_path: Path) -> None:
    # On PostgreSQL the two processes' transactions really run concurrently (row locks on the
    # hot global rows, dedup decided by the insert), unlike SQLite's single writer.
    settings = make_settings(partitions=4, speed_store_url=store_url)
    truth_file = tmp_path / "truth.jsonl"
    producer = start_producer(settings, truth_file, "--count", "20000", *mixed_stream(2000, 60))
    first = SpeedProcess(settings, instance=0).start()
    second = SpeedProcess(settings, instance=1).start()
    time.sleep(4)
    first.kill()
    time.sleep(4)
    first = SpeedProcess(settings, instance=0).start()
    assert producer.wait(300) == 0
    engine = make_engine(settings.speed_store_url)
    wait_caught_up(settings, engine, timeout=180)
    truth = read_truth(truth_file)
    assert speed_views(engine) == expected_views(truth)
    assert first.terminate() == 0
    assert second.terminate() == 0
    assert_landing_holds_every_valid_event_once(settings, truth)


def test_sigterm_mid_stream_then_resume_is_exact(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    truth_file = tmp_path / "truth.jsonl"
    producer = start_producer(settings, truth_file, "--count", "8000", "--rate", "2000")
    engine = make_engine(settings.speed_store_url)  # tables exist before the process starts
    speed = SpeedProcess(settings).start()
    wait_until(lambda: stored_offsets(engine, settings.topic), 60, "the first committed batch")
    speed.proc.send_signal(signal.SIGTERM)
    assert speed.proc.wait(60) == 0
    assert producer.wait(300) == 0
    speed = SpeedProcess(settings).start()
    wait_caught_up(settings, engine)
    assert speed_views(engine) == expected_views(read_truth(truth_file))
    assert speed.terminate() == 0
