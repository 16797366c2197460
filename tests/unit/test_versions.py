"""Publishing and rolling back only validated versions; a rollback pins CURRENT until resumed;
one horizon rule for every caller. Versions are written by hand (no Spark)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from batch_layer import pipeline
from batch_layer.catalog import VersionError, list_versions, read_manifest
from batch_layer.horizon import HorizonError, check_horizon, choose_horizon
from batch_layer.validate import ValidationFailed, validate_version
from batch_layer.versions import (
    ConcurrentUpdateError,
    PinnedError,
    prune,
    publish,
    resume,
    rollback,
)
from lambda_contracts.batch_files import read_view
from lambda_contracts.layout import BatchPointer, Layout, PartitionProgress
from lambda_contracts.settings import Settings
from lambda_contracts.views import VIEWS
from tests.support.versions import BUCKET, make_version, validated


def test_validation_is_recorded_and_only_validated_versions_publish(layout: Layout) -> None:
    good = make_version(layout, "01", 1000, 5, 5)
    bad = make_version(layout, "02", 2000, 5, 4)
    with pytest.raises(VersionError, match="not validated"):
        publish(layout, good)  # never validated
    validate_version(layout, good)
    assert read_manifest(layout, good).validated is True
    with pytest.raises(ValidationFailed):
        validate_version(layout, bad)
    verdict = read_manifest(layout, bad).validation
    assert verdict is not None and verdict.ok is False
    publish(layout, good)
    with pytest.raises(VersionError, match="not validated"):
        publish(layout, bad)
    assert layout.read_current().version == good


def test_rollback_skips_versions_that_failed_validation_and_pins(layout: Layout) -> None:
    v1 = validated(layout, "01", 1000)
    v2 = make_version(layout, "02", 2000, 5, 4)
    with pytest.raises(ValidationFailed):
        validate_version(layout, v2)
    v3 = validated(layout, "03", 3000)
    publish(layout, v3)
    pointer = rollback(layout)
    assert (pointer.version, pointer.pinned) == (v1, True)
    assert layout.read_current() == pointer
    with pytest.raises(VersionError, match="not validated"):
        rollback(layout, v2)


def test_a_pinned_current_is_not_published_over_until_resumed(layout: Layout) -> None:
    v1 = validated(layout, "01", 1000)
    v2 = validated(layout, "02", 2000)
    publish(layout, v2)
    rollback(layout, v1)
    v3 = validated(layout, "03", 3000)
    with pytest.raises(PinnedError):
        publish(layout, v3)
    assert layout.read_current().version == v1
    assert resume(layout).pinned is False
    assert publish(layout, v3).version == v3


def test_run_once_skips_while_pinned_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, bucket_ms=BUCKET, partitions=1)
    layout = Layout.of(settings)
    v1 = validated(layout, "01", 1000)
    publish(layout, validated(layout, "02", 2000))
    rollback(layout, v1)
    monkeypatch.setattr(pipeline, "recompute", lambda *a: pytest.fail("recomputed while pinned"))
    with pytest.raises(pipeline.NothingToDo, match="pinned"):
        pipeline.run_once(settings, "v20260101T000003Z-x", "x")


def test_freshness_shows_the_pin(tmp_path: Path) -> None:
    from serving.main import create_app

    settings = Settings(data_dir=tmp_path, bucket_ms=BUCKET, partitions=1)
    layout = Layout.of(settings)
    v1 = validated(layout, "01", 1000)
    publish(layout, validated(layout, "02", 2000))
    app = create_app(settings)
    with TestClient(app) as client:
        app.state.end_offsets.get = lambda: None  # no broker in unit tests
        assert client.get("/v1/freshness").json()["batch_pinned"] is False
        rollback(layout, v1)
        body = client.get("/v1/freshness").json()
        assert (body["batch_version"], body["batch_pinned"]) == (v1, True)


@pytest.mark.parametrize(
    ("horizon", "kwargs", "problem"),
    [
        (3000, {}, None),
        (3500, {}, "bucket boundary"),
        (5000, {}, "past the landing watermark"),
        (1000, {}, "older than the published"),
        (1000, {"rebuild": True, "floor_ms": 1000}, None),
        (0, {"rebuild": True, "floor_ms": 1000}, "kept for rollback"),
    ],
)
def test_check_horizon(horizon: int, kwargs: dict, problem: str | None) -> None:
    args = {"bucket_ms": BUCKET, "watermark_ms": 4000, "current_ms": 2000} | kwargs
    if problem is None:
        check_horizon(horizon, **args)
    else:
        with pytest.raises(HorizonError, match=problem):
            check_horizon(horizon, **args)


def test_choose_horizon_takes_the_watermark_or_checks_the_request(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bucket_ms=BUCKET, partitions=2)
    layout = Layout.of(settings)
    layout.write_progress(PartitionProgress(0, 10, 5500))
    layout.write_progress(PartitionProgress(1, 10, 4200))
    assert choose_horizon(settings) == 4000  # the watermark: floor of the slowest partition
    assert choose_horizon(settings, 3000) == 3000
    with pytest.raises(HorizonError):
        choose_horizon(settings, 5000)
    publish(layout, validated(layout, "01", 4000))
    assert choose_horizon(settings) is None  # nothing new past the published horizon
    assert choose_horizon(settings, rebuild=True) == 4000
    with pytest.raises(HorizonError):
        choose_horizon(settings, 3000)


def test_current_moves_only_by_compare_and_swap(layout: Layout) -> None:
    first = BatchPointer("v1", 1000, 1)
    assert layout.read_current_versioned() == (None, None)
    assert layout.swap_current(first, None)
    assert not layout.swap_current(BatchPointer("v2", 2000, 2), None)  # exists already
    pointer, etag = layout.read_current_versioned()
    assert pointer == first and etag
    assert layout.swap_current(BatchPointer("v2", 2000, 2), etag)
    assert not layout.swap_current(BatchPointer("v3", 3000, 3), etag)  # stale token
    assert layout.read_current() == BatchPointer("v2", 2000, 2)


def test_of_publishers_that_read_the_same_current_exactly_one_wins(layout: Layout) -> None:
    layout.swap_current(BatchPointer("v0", 1000, 1), None)
    _, etag = layout.read_current_versioned()
    contenders = 8
    barrier = threading.Barrier(contenders)

    def contend(i: int) -> bool:
        barrier.wait()
        return layout.swap_current(BatchPointer(f"v{i + 1}", 2000, 2), etag)

    with ThreadPoolExecutor(contenders) as pool:
        won = list(pool.map(contend, range(contenders)))
    assert won.count(True) == 1
    winner = layout.read_current()
    assert winner is not None and winner.version == f"v{won.index(True) + 1}"


def test_a_publish_that_lost_the_race_changes_nothing(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = validated(layout, "01", 1000)
    new = validated(layout, "02", 2000)
    publish(layout, old)
    # An operator's rollback lands between this publisher's read and its swap.
    read = Layout.read_current_versioned

    def read_then_rollback(self: Layout) -> tuple[BatchPointer | None, str | None]:
        seen = read(self)
        self.swap_current(BatchPointer(old, 1000, 5, pinned=True), seen[1])
        return seen

    monkeypatch.setattr(Layout, "read_current_versioned", read_then_rollback)
    with pytest.raises(ConcurrentUpdateError, match="CURRENT moved"):
        publish(layout, new)
    monkeypatch.undo()
    assert layout.read_current() == BatchPointer(old, 1000, 5, pinned=True)


def test_prune_keeps_current_and_the_newest_and_clears_old_leftovers(layout: Layout) -> None:
    v1, v2, v3 = (validated(layout, n, 1000 * int(n)) for n in ("01", "02", "03"))
    publish(layout, v1)
    rollback(layout, v1)  # CURRENT pinned to the oldest: prune must keep it
    # Leftovers of jobs (files, no manifest) whose ids say they started long ago: until nothing
    # was written under them for GARBAGE_AFTER they may be jobs still running (issue 32, 13).
    leftovers = ("v20260101T000000Z-killed", "v20260101T120000Z-writing")
    for leftover in leftovers:
        layout.store.put(f"{layout.view_prefix(leftover, 'global_minute')}part-0.parquet", b"x")
    written = datetime.now(UTC)
    doomed = prune(layout, keep=1, now=written + timedelta(hours=1))
    assert doomed == [v2]
    assert list_versions(layout) == [v1, v3]
    assert all(layout.version_ids().get(leftover) is False for leftover in leftovers)
    assert not layout.store.list(layout.version_prefix(v2))  # every object of v2 went
    assert prune(layout, keep=1, now=written + timedelta(hours=7)) == []
    assert not set(leftovers) & set(layout.version_ids())


def test_a_running_job_beats_under_its_version(tmp_path: Path) -> None:
    from batch_layer.liveness import heartbeat, last_written_ms

    layout = Layout(tmp_path)
    version = "v20260101T000000Z-long"
    assert last_written_ms(layout, version) == 0
    with heartbeat(layout, version, every_s=0.05):
        first = last_written_ms(layout, version)
        assert first > 0
        time.sleep(0.3)
        assert last_written_ms(layout, version) > first
    assert layout.version_ids() == {version: False}


def test_prune_keeps_the_files_a_kept_version_shares_and_removes_them_with_the_last(
    layout: Layout,
) -> None:
    """An incremental version names the files of the days it left alone, under the prefix of
    the version that wrote them: pruning that version must keep exactly those, and a later
    prune (once no kept version names them) must remove them."""
    v1 = validated(layout, "01", 1000)
    v2 = validated(layout, "02", 2000)
    v3 = validated(layout, "03", 3000)
    first, second = read_manifest(layout, v1), read_manifest(layout, v2)
    assert first.output_files is not None and second.output_files is not None
    shared = first.output_files["global_minute"][0]
    alone = first.output_files["account_minute"][0]
    extra = f"{layout.version_prefix(v1)}dedup-index/part-0.parquet"
    layout.store.put(extra, b"index")
    outputs = {**second.output_files}
    outputs["global_minute"] = [*outputs["global_minute"], shared]
    changed = {"output_files": outputs, "dedup_index_files": {extra: 1000}}
    layout.write_manifest(v2, second.model_copy(update=changed))
    publish(layout, v3)

    assert prune(layout, keep=2, now=datetime(2026, 1, 1, 15, tzinfo=UTC)) == [v1]
    assert list_versions(layout) == [v2, v3]
    assert layout.store.exists(shared) and layout.store.exists(extra)
    assert not layout.store.exists(alone)
    assert layout.read_manifest(v1) is None
    global_minute = next(v for v in VIEWS if v.name == "global_minute")
    assert read_view(layout, v2, global_minute).num_rows == 2  # v2 still reads whole

    assert prune(layout, keep=1, now=datetime(2026, 1, 1, 15, tzinfo=UTC)) == [v2]
    assert not layout.store.exists(shared) and not layout.store.exists(extra)
