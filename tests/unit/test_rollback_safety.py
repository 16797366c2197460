"""Rollbacks, publishes and prunes never make an answer count wrong (issue 32, items 9-11, 13).

Versions are written by hand (no Spark), the speed store is the real SQLite one. The oracle:
every ingest bucket b in 0..N-1 holds EVENTS_PER_BUCKET events, each counted once by the speed
layer (a speed row per bucket); a version at horizon H counts the events of the buckets below
H. An answer on CURRENT = its batch events + the speed rows left at or above H; exact iff it
is the number of events written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from batch_layer import pipeline, versions
from batch_layer.catalog import VersionError, list_versions
from batch_layer.validate import ValidationFailed, validate_version
from batch_layer.versions import prune, publish, resume, rollback
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.manifest import Manifest
from lambda_contracts.settings import Settings
from lambda_contracts.store_schema import view_tables
from lambda_contracts.views import VIEWS
from tests.support.versions import put_counted_version

BUCKET = 1000
BUCKETS = 8
EVENTS_PER_BUCKET = 5
TOTAL = BUCKETS * EVENTS_PER_BUCKET
NOW = datetime(2026, 1, 2, tzinfo=UTC)  # a day after the versions' ids: none is in progress


def vid(n: int, tag: str = "run") -> str:
    return f"v20260101T0000{n:02d}Z-{tag}"


def write(
    layout: Layout,
    n: int,
    horizon: int,
    good: bool = True,
    base: str | None = None,
    tag: str = "run",
    version: str | None = None,
) -> str:
    """A complete version counting the events below ``horizon`` (one short if not ``good``)."""
    version = version or vid(n, tag)
    events = horizon // BUCKET * EVENTS_PER_BUCKET
    in_views = events if good else events - 1
    put_counted_version(
        layout,
        version,
        horizon,
        BUCKET,
        events,
        in_views,
        mode="incremental" if base else "full",
        base_version=base,
        created_at_ms=int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000),
    )
    if good:
        validate_version(layout, version)
    else:
        with pytest.raises(ValidationFailed):
            validate_version(layout, version)
    return version


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a speed store holding a row of EVENTS_PER_BUCKET events per bucket."""
    settings = Settings(data_dir=tmp_path, bucket_ms=BUCKET, partitions=1, batch_keep_versions=2)
    engine = make_engine(settings.speed_store_url)
    with engine.begin() as conn:
        for view in VIEWS:
            rows = []
            for b in range(BUCKETS):
                row: dict[str, object] = {d: "acct" for d in view.dimensions}
                row |= {"window_start": 60_000, "ingest_bucket": b * BUCKET}
                row |= dict(zip(view.measure_names, (EVENTS_PER_BUCKET, 50, 10, 10), strict=True))
                rows.append(row)
            conn.execute(insert(view_tables[view.name]), rows)
    engine.dispose()
    return settings


def answer(settings: Settings) -> int:
    """What an answer on CURRENT counts: its batch events + speed rows at or above H."""
    layout = Layout.of(settings)
    current = layout.read_current()
    assert current is not None
    manifest = layout.read_manifest(current.version)
    assert manifest is not None, f"CURRENT names {current.version}, which does not exist"
    table = view_tables["global_minute"]
    engine = make_engine(settings.speed_store_url)
    with engine.connect() as conn:
        speed = conn.execute(
            select(func.coalesce(func.sum(table.c.txn_count), 0)).where(
                table.c.ingest_bucket >= current.horizon_ms
            )
        ).scalar_one()
    engine.dispose()
    return manifest.events + int(speed)


def publish_and_expire(settings: Settings, version: str) -> None:
    """Publish and expire, without the prune that follows in a batch or rebuild run."""
    layout = Layout.of(settings)
    pointer = publish(layout, version)
    pipeline.expire(settings, pointer.horizon_ms)


def assert_exact_or_refused(settings: Settings, target: str) -> bool:
    """Roll back to ``target``: either refused with CURRENT as it was, or exact. True if
    the rollback was refused."""
    layout = Layout.of(settings)
    before = layout.read_current()
    try:
        rollback(layout, target)
    except VersionError as exc:
        assert "speed" in str(exc) or "pruned" in str(exc) or "deleted" in str(exc), exc
        assert layout.read_current() == before
        return True
    assert answer(settings) == TOTAL
    return False


# --- 9: rollback past the speed window ------------------------------------------------------


def test_a_rollback_below_the_expired_speed_rows_is_refused(settings: Settings) -> None:
    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    for version in (v1, v2, v3):
        publish_and_expire(settings, version)
    assert answer(settings) == TOTAL
    assert assert_exact_or_refused(settings, v1)  # its rows [1000, 2000) went with v3's expiry
    assert not assert_exact_or_refused(settings, v2)  # still kept: exact
    assert resume(layout) is not None
    publish_and_expire(settings, write(layout, 4, 4 * BUCKET))
    assert answer(settings) == TOTAL


def test_rollback_reach_is_listed(settings: Settings) -> None:
    from batch_layer.retention import rollback_reach

    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    bad = write(layout, 4, 4 * BUCKET, good=False)
    for version in (v1, v2, v3):
        publish_and_expire(settings, version)
    reach = rollback_reach(layout)
    assert reach[v2] is None and reach[v3] == "CURRENT"
    assert "speed rows" in str(reach[v1]) and "not validated" in str(reach[bad])


def test_a_rollback_without_a_target_takes_the_newest_reachable_version(
    settings: Settings,
) -> None:
    """The previous validated version may be beyond reach (its speed rows expired); the
    default target is then the newest one that is not, and with none, a clear refusal."""
    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    bad = write(layout, 4, 4 * BUCKET, good=False)
    for version in (v1, v2, v3):
        publish_and_expire(settings, version)
    v5 = write(layout, 5, 5 * BUCKET)
    publish(layout, v5)  # v3 is the previous one; v5's expiry has not run yet
    pipeline.expire(settings, 3 * BUCKET)  # below v3: v1 and v2 are out of reach
    assert rollback(layout).version == v3
    assert answer(settings) == TOTAL
    resume(layout)
    publish(layout, write(layout, 6, 6 * BUCKET))
    keep_one = settings.model_copy(update={"batch_keep_versions": 1})
    pipeline.expire(keep_one, 6 * BUCKET)  # an expiry that keeps no earlier version
    before = layout.read_current()
    with pytest.raises(versions.RollbackRefused) as refused:
        rollback(layout)
    assert "no earlier validated version" in str(refused.value) and bad not in str(refused.value)
    assert layout.read_current() == before


def test_two_prunes_at_once_keep_each_others_marks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second prune marks its victims while the first still deletes: neither clears the
    other's marks, so a rollback between them refuses every version being deleted."""
    from batch_layer import retention

    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    publish(layout, v3)
    delete = versions.delete_version
    seen: list[set[str]] = []

    def second_prune_meanwhile(lay: Layout, version: str) -> None:
        if not seen:
            seen.append(set())
            retention.mark_pruning(layout, lambda record: [v2])
            seen[0] = retention.read_retention(layout)[0].live_pruning()
            for target in (v1, v2):
                with pytest.raises(versions.RollbackRefused):
                    rollback(layout, target)
        delete(lay, version)

    monkeypatch.setattr(versions, "delete_version", second_prune_meanwhile)
    assert prune(layout, keep=2, now=NOW) == [v1]
    assert seen[0] == {v1, v2}
    assert retention.read_retention(layout)[0].live_pruning() == {v2}  # the other's, kept
    current = layout.read_current()
    assert current is not None and current.version == v3 and not current.pinned


def test_a_prune_whose_marks_lapsed_deletes_no_more(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune stalled past its marks' lapse stops: a rollback may already use the rest."""
    from batch_layer import retention

    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    publish(layout, v3)
    delete = versions.delete_version

    def stall(lay: Layout, version: str) -> None:
        delete(lay, version)
        clock = retention.now_ms() + retention.HOLD_MS + 1
        monkeypatch.setattr(retention, "now_ms", lambda: clock)

    monkeypatch.setattr(versions, "delete_version", stall)
    assert prune(layout, keep=1, now=NOW) == [v1]
    assert list_versions(layout) == [v2, v3]


def test_a_prune_deciding_before_a_rollback_swaps_keeps_its_target(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune runs between a rollback's checks and its swap of CURRENT."""
    layout = Layout.of(settings)
    v1, _v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    publish(layout, v3)
    swap = Layout.swap_current
    ran: list[list[str]] = []

    def prune_first(self: Layout, pointer: Any, etag: Any) -> bool:
        if pointer.pinned and not ran:
            ran.append(prune(layout, keep=1, now=NOW))
        return swap(self, pointer, etag)

    monkeypatch.setattr(Layout, "swap_current", prune_first)
    refused = assert_exact_or_refused(settings, v1)
    monkeypatch.undo()
    current = layout.read_current()
    assert current is not None and layout.read_manifest(current.version) is not None
    assert refused or v1 in list_versions(layout)


def test_a_rollback_while_a_prune_deletes_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback to a version a running prune has already decided to delete."""
    layout = Layout.of(settings)
    v1, _v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    publish(layout, v3)
    delete = versions.delete_version
    outcome: list[bool] = []

    def rollback_first(lay: Layout, version: str) -> None:
        if not outcome:
            outcome.append(assert_exact_or_refused(settings, v1))
        delete(lay, version)

    monkeypatch.setattr(versions, "delete_version", rollback_first)
    prune(layout, keep=1, now=NOW)
    monkeypatch.undo()
    current = layout.read_current()
    assert current is not None and layout.read_manifest(current.version) is not None
    assert outcome == [True] or current.version in list_versions(layout)


# --- 10: publish on the wrong base ----------------------------------------------------------


def test_publish_refuses_a_version_built_on_a_base_rolled_away_from(settings: Settings) -> None:
    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    v2 = write(layout, 2, 2 * BUCKET, base=v1)
    publish(layout, v1)
    publish(layout, v2)
    rollback(layout, v1)
    resume(layout)
    stale = write(layout, 3, 3 * BUCKET, base=v2)  # an increment of v2, started before
    with pytest.raises(VersionError, match="base"):
        publish(layout, stale)
    current = layout.read_current()
    assert current is not None and current.version == v1
    rebuilt = write(layout, 4, 3 * BUCKET)  # a full rebuild has no base: it publishes
    assert publish(layout, rebuilt).version == rebuilt


def test_run_once_goes_again_from_the_new_base(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recompute's base moves under it (a rollback and resume meanwhile): the run is
    recomputed on the new CURRENT and that is what is published."""
    from lambda_contracts.layout import PartitionProgress

    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    v2 = write(layout, 2, 2 * BUCKET, base=v1)
    publish(layout, v1)
    publish(layout, v2)
    layout.write_progress(PartitionProgress(0, 100, 3 * BUCKET))
    bases: list[str] = []

    def recompute(s: Settings, horizon: int, version: str, run_id: str, full: bool) -> None:
        current = layout.read_current()
        assert current is not None
        base = current.version
        if not bases:  # an operator rolls back while this first attempt computes
            rollback(layout, v1)
            resume(layout)
        bases.append(base)
        write(layout, 0, horizon, base=base, version=version)

    monkeypatch.setattr(pipeline, "recompute", recompute)
    report = pipeline.run_once(settings, vid(20, "manual"), "manual")
    current = layout.read_current()
    assert current is not None and current.horizon_ms == 3 * BUCKET
    assert bases == [v2, v1]
    published = layout.read_manifest(current.version)
    assert published is not None and published.base_version == v1
    assert report["version"] == current.version


# --- 11: failures crowd out good versions ---------------------------------------------------


def test_keep_counts_validated_versions_and_failures_go_by_their_own_rule(
    settings: Settings,
) -> None:
    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    v2 = write(layout, 2, 2 * BUCKET)
    publish_and_expire(settings, v1)
    publish_and_expire(settings, v2)
    failed = [write(layout, n, n * BUCKET, good=False) for n in (3, 4)]
    v5 = write(layout, 5, 5 * BUCKET)
    publish_and_expire(settings, v5)
    assert not assert_exact_or_refused(settings, v2)  # in the keep window of 2 validated
    resume(layout)
    prune(layout, keep=2, now=NOW)
    assert list_versions(layout) == [v2, v5]  # the failures, older than v5, went; v1 too
    assert not set(failed) & set(layout.version_ids())


def test_an_unvalidated_version_newer_than_the_published_one_is_kept(settings: Settings) -> None:
    """A failed run after the newest validated version is kept for diagnosis, and a version
    whose validation is still to come (the job in progress) is never deleted."""
    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    publish(layout, v1)
    failed = write(layout, 2, 2 * BUCKET, good=False)
    prune(layout, keep=1, now=NOW)
    assert list_versions(layout) == [v1, failed]


def test_the_cli_lists_reach_and_refuses_with_a_clear_message(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from batch_layer import cli

    layout = Layout.of(settings)
    v1, v2, v3 = (write(layout, n, n * BUCKET) for n in (1, 2, 3))
    for version in (v1, v2, v3):
        publish_and_expire(settings, version)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    monkeypatch.setattr(cli, "console", cli.Console(width=400))
    runner = CliRunner()
    listed = runner.invoke(cli.app, ["list"]).output
    rows = {v: next(line for line in listed.splitlines() if v in line) for v in (v1, v2, v3)}
    assert (
        "no: " in rows[v1]
        and "expired" in rows[v1]
        and "yes" in rows[v2].split(v2)[1].rsplit("│", 2)[-2]
    )
    rows = [
        json.loads(line) for line in runner.invoke(cli.app, ["list", "--json"]).output.splitlines()
    ]
    assert [(r["version"], r["current"], r["rollback"]) for r in rows] == [
        (v1, False, False),
        (v2, False, True),
        (v3, True, None),
    ]
    assert "expired" in rows[0]["rollback_refused_because"]
    refused = runner.invoke(cli.app, ["rollback", "--to", v1])
    assert refused.exit_code == 1 and "rollback refused" in refused.output
    assert "CURRENT is unchanged" in refused.output
    current = layout.read_current()
    assert current is not None and current.version == v3 and not current.pinned


# --- 13: a verdict is tied to the manifest it checked ---------------------------------------


def test_a_verdict_is_not_stored_on_a_manifest_rewritten_while_validating(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch_layer import validate

    layout = Layout.of(settings)
    version = write(layout, 1, 1 * BUCKET)
    before = layout.read_manifest(version)
    assert before is not None
    rewritten = Manifest.model_validate(
        {**before.model_dump(exclude={"validation"}), "events": 999, "rerun": True}
    )
    totals = validate.view_totals

    def rewrite_meanwhile(lay: Layout, v: str) -> Any:
        found = totals(lay, v)
        layout.write_manifest(version, rewritten)  # a re-run of the job lands its manifest
        return found

    monkeypatch.setattr(validate, "view_totals", rewrite_meanwhile)
    with pytest.raises(VersionError, match="changed while it was validated"):
        validate_version(layout, version)
    assert layout.read_manifest(version) == rewritten  # kept whole, with no verdict


def test_rerunning_a_pruned_version_id_leaves_the_files_current_shares(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyspark.sql

    from batch_layer import spark_job

    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    v2 = write(layout, 2, 2 * BUCKET, base=v1)
    first, second = layout.read_manifest(v1), layout.read_manifest(v2)
    assert first is not None and first.output_files and second and second.output_files
    shared = first.output_files["global_minute"][0]
    outputs = {**second.output_files, "global_minute": [shared]}  # v2 left that alone
    layout.write_manifest(v2, second.model_copy(update={"output_files": outputs}))
    publish(layout, v1)
    publish(layout, v2)
    assert prune(layout, keep=1, now=NOW) == [v1]
    assert layout.store.exists(shared)

    class NoSpark:  # the job must stop before it computes anything
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the re-run got as far as starting Spark")

    monkeypatch.setattr(pyspark.sql, "SparkSession", NoSpark())
    with pytest.raises(VersionError, match="new version id"):
        spark_job.run(settings, 1 * BUCKET, v1, "rerun")
    assert layout.store.exists(shared)


# --- 13: the drift report of a retried publish ----------------------------------------------


def test_a_publish_retried_after_its_swap_reports_the_drift_of_what_it_absorbed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task dies after CURRENT moved but before the run was recorded; its retry must
    report the buckets [H1, H2) it absorbed, not everything since 0."""
    from batch_layer import speed_sync

    layout = Layout.of(settings)
    v1 = write(layout, 1, 1 * BUCKET)
    v2 = write(layout, 3, 3 * BUCKET, base=v1)
    pipeline.publish_version(settings, v1)
    swap = Layout.swap_current

    def swap_then_die(self: Layout, pointer: Any, etag: Any) -> bool:
        moved = swap(self, pointer, etag)
        if moved and pointer.version == v2:
            raise SystemExit("killed right after the swap")
        return moved

    monkeypatch.setattr(Layout, "swap_current", swap_then_die)
    with pytest.raises(SystemExit):
        pipeline.publish_version(settings, v2)
    monkeypatch.undo()
    report = pipeline.publish_version(settings, v2)  # the retry
    assert report["previous_horizon_ms"] == 1 * BUCKET
    assert report["absorbed_events_batch"] == 2 * EVENTS_PER_BUCKET
    assert report["absorbed_events_speed"] == 2 * EVENTS_PER_BUCKET
    assert (report["drift_events"], report["drift_cents"]) == (0, 0)
    engine = make_engine(settings.speed_store_url)
    assert speed_sync.stored_report(engine, v2) == report
    engine.dispose()


def test_a_hold_left_by_a_mover_that_died_lapses(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollback killed between its hold and its swap does not stop expiry for good."""
    from batch_layer import retention
    from lambda_contracts import retention as record

    layout = Layout.of(settings)
    v1, v2 = (write(layout, n, n * BUCKET) for n in (1, 2))
    publish(layout, v1)
    publish(layout, v2)
    settings.batch_keep_versions = 1  # so only the hold keeps the rows of [1000, 2000)
    retention.hold(layout, v1, 1 * BUCKET)  # ... and the mover dies here
    pipeline.expire(settings, 2 * BUCKET)
    assert record.speed_floor(layout) == 1 * BUCKET  # held while the hold lives
    monkeypatch.setattr(record, "now_ms", lambda: 2**62)  # long after it lapsed
    pipeline.expire(settings, 2 * BUCKET)
    assert record.speed_floor(layout) == 2 * BUCKET
