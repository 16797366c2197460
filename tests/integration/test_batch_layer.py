"""The batch layer on real Spark over a landing zone written by the real speed layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_layer.catalog import list_versions
from batch_layer.pipeline import run_once
from batch_layer.versions import new_version_id
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from tests.support.oracle import oracle_views
from tests.support.pipeline import (
    SpeedProcess,
    batch_views,
    expected_views,
    kill_recompute_mid_write,
    merge_views,
    mixed_stream,
    produce,
    speed_views,
    truth_rows,
    wait_caught_up,
    wait_sealed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET_MS = 3000


def test_batch_equals_reference_parity_merge_and_killed_job(make_settings, tmp_path: Path) -> None:
    settings = make_settings(bucket_ms=BUCKET_MS, landing_flush_ms=300, idle_seal_grace_ms=200)
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)
    speed = SpeedProcess(settings).start()

    # Phase 1: a mixed stream, then a batch run over all of it.
    truth1 = produce(
        settings,
        tmp_path / "t1.jsonl",
        "--count",
        "4000",
        "--id-prefix",
        "a",
        *mixed_stream(1500, 40),
    )
    wait_caught_up(settings, engine)
    h1 = wait_sealed(settings, truth1)
    speed_before = speed_views(engine)
    expected1 = expected_views(truth1)
    assert speed_before == expected1

    v1 = new_version_id("phase1")
    report = run_once(settings, v1, "phase1", horizon_ms=h1)
    batch1 = batch_views(layout, v1)
    assert batch1 == expected1, "batch views differ from the reference semantics"
    assert batch1 == speed_before, "speed/batch parity broken"
    assert report["drift_events"] == 0 and report["drift_cents"] == 0
    assert layout.read_current().version == v1
    assert speed_views(engine, min_bucket=0) == merge_views()  # rows below H1 were expired

    # Phase 2: new events plus re-sent phase-1 events (duplicates across the horizon).
    resend = tmp_path / "resend.jsonl"
    resend.write_bytes(b"\n".join([r.value for r in truth1 if r.kind == "valid"][:50]) + b"\n")
    truth2 = produce(
        settings,
        tmp_path / "t2.jsonl",
        "--count",
        "3000",
        "--id-prefix",
        "b",
        *mixed_stream(1500, 40),
    )
    truth3 = produce(settings, tmp_path / "t3.jsonl", "--from-file", str(resend), "--rate", "0")
    wait_caught_up(settings, engine)
    everything = truth1 + truth2 + truth3
    merged = merge_views(batch_views(layout, v1), speed_views(engine, min_bucket=h1))
    assert merged == expected_views(everything), "batch(H) + speed(>= H) != ground truth"

    # A recompute killed mid-write leaves CURRENT and the visible versions untouched.
    h2 = wait_sealed(settings, everything)
    v2 = new_version_id("killed")
    kill_recompute_mid_write(settings, h2, v2)
    assert layout.read_current().version == v1
    assert list_versions(layout) == [v1]

    v3 = new_version_id("after-kill")
    run_once(settings, v3, "after-kill", horizon_ms=h2)
    assert layout.read_current().version == v3
    rows_below_h2 = [r for r in truth_rows(everything) if r["kafka_ts"] < h2]
    assert batch_views(layout, v3) == oracle_views(rows_below_h2)
    assert speed.terminate() == 0
