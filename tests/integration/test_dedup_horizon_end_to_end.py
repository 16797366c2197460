"""The dedup rule end to end, at a small horizon D: real broker, speed layer, Spark, publish.

A copy re-sent within D of its original is counted in neither layer; one re-sent more than D
later is a new event in both. The answers (batch at H + speed rows at or above H) equal the
independent oracle before and after each publish, and the second publish is an incremental
run that must judge the late copies against the dedup index of the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_layer.catalog import read_manifest
from batch_layer.pipeline import run_once
from batch_layer.versions import new_version_id
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from tests.support.pipeline import (
    SpeedProcess,
    TruthRecord,
    batch_views,
    expected_views,
    merge_views,
    produce,
    speed_views,
    wait_caught_up,
    wait_sealed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000
DEDUP_MS = 20_000


def resend(
    settings: Settings, tmp_path: Path, name: str, records: list[TruthRecord]
) -> list[TruthRecord]:
    """Produce these records' values again, as a client retrying them would."""
    source = tmp_path / f"{name}.src"
    source.write_bytes(b"\n".join(r.value for r in records) + b"\n")
    return produce(settings, tmp_path / f"{name}.jsonl", "--from-file", str(source), "--rate", "0")


def gaps(originals: list[TruthRecord], copies: list[TruthRecord]) -> list[int]:
    """Kafka-time gap between each copy and the original of the same value."""
    first = {r.value: r.timestamp for r in originals}
    return [c.timestamp - first[c.value] for c in copies]


def test_copies_inside_d_count_once_and_after_d_twice_in_both_layers(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(
        bucket_ms=BUCKET_MS,
        dedup_horizon_ms=DEDUP_MS,
        landing_flush_ms=300,
        idle_seal_grace_ms=200,
    )
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)
    speed = SpeedProcess(settings).start()
    answers: list[TruthRecord] = []

    def answers_are_exact(horizon: int) -> None:
        wait_caught_up(settings, engine)
        current = layout.read_current()
        batch = batch_views(layout, current.version) if current else {}
        merged = merge_views(batch, speed_views(engine, min_bucket=horizon))
        assert merged == expected_views(answers, DEDUP_MS)

    originals = produce(
        settings, tmp_path / "orig.jsonl", "--count", "400", "--id-prefix", "d", "--rate", "0",
        "--late", "0.2",  # CreatedTime up to 3 days back: several event-time days
    )  # fmt: skip
    valid = [r for r in originals if r.event is not None]  # on time or late
    inside = resend(settings, tmp_path, "inside", valid[:60])  # seconds later: duplicates
    answers += originals + inside
    assert max(gaps(originals, inside)) <= DEDUP_MS, "the machine was too slow for this D"
    answers_are_exact(0)
    assert speed_views(engine) == expected_views(answers, DEDUP_MS)

    # Publish 1: a full run over what is sealed; answers stay exact across it.
    h1 = wait_sealed(settings, answers)
    v1 = new_version_id("d1")
    run_once(settings, v1, "d1", horizon_ms=h1)
    answers_are_exact(h1)

    time.sleep(DEDUP_MS / 1000 + 1)
    outside = resend(settings, tmp_path, "outside", valid[60:120])  # more than D later: new
    again = resend(settings, tmp_path, "again", valid[60:90])  # copies of those: duplicates
    answers += outside + again
    assert min(gaps(originals, outside)) > DEDUP_MS
    answers_are_exact(h1)
    expected = expected_views(answers, DEDUP_MS)
    counted = sum(c for c, *_ in expected["global_minute"].values())
    assert counted == len(valid) + 60, "after D a copy is a new event; inside D it is not"

    # Publish 2: incremental, judging the new copies against v1's dedup index.
    h2 = wait_sealed(settings, answers)
    v2 = new_version_id("d2")
    run_once(settings, v2, "d2", horizon_ms=h2)
    manifest = read_manifest(layout, v2)
    assert manifest.mode == "incremental" and manifest.base_version == v1
    assert batch_views(layout, v2) == expected
    answers_are_exact(h2)
    assert speed.terminate() == 0
