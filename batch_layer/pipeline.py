"""The batch run as plain functions; the Airflow DAGs and ``lambda-batch`` only wire them.

wait for sealed data (``horizon.choose_horizon``) → recompute (spark-submit) → validate → publish
(CURRENT flip + run record with drift) → expire absorbed speed rows → prune old versions.
Each step is idempotent: retrying it after a failure gives the same result.
"""

from __future__ import annotations

import subprocess
from typing import Any

from batch_layer.catalog import read_manifest, safe_expiry_horizon
from batch_layer.horizon import choose_horizon, rebuild_floor
from batch_layer.retention import raise_speed_floor
from batch_layer.speed_sync import (
    discard_run,
    expire_speed_rows,
    mark_published,
    record_run,
    stored_report,
)
from batch_layer.submit import spark_submit_command, submit_env
from batch_layer.validate import validate_version, view_totals
from batch_layer.versions import PinnedError, StaleBaseError, prune, publish
from lambda_contracts.db import make_engine
from lambda_contracts.layout import Layout
from lambda_contracts.settings import Settings
from lambda_contracts.views import GLOBAL_MINUTE


class NothingToDo(RuntimeError):
    """No new sealed bucket past the published horizon, or CURRENT is pinned by a rollback."""


def pinned_version(settings: Settings) -> str | None:
    """The version a rollback pinned CURRENT to, if any: runs must not publish over it."""
    current = Layout.of(settings).read_current()
    return current.version if current and current.pinned else None


def recompute(
    settings: Settings, horizon_ms: int, version: str, run_id: str, full: bool = False
) -> None:
    """Run the Spark job through spark-submit (raises if it fails); incremental unless
    ``full``."""
    cmd = spark_submit_command(settings, horizon_ms, version, run_id, full)
    subprocess.run(cmd, check=True, env=submit_env(settings))


def publish_version(settings: Settings, version: str, rebuild: bool = False) -> dict[str, Any]:
    """Flip CURRENT to a validated version and record the run with its drift report.

    The run is recorded (pending) before the flip, against the CURRENT it replaces, so a
    retry after a flip whose task died reports what that publish absorbed; a refused flip
    drops the record. Raises PinnedError while a rollback pins CURRENT, StaleBaseError if
    the version was built on another base, HorizonError if the horizon went stale.
    """
    assert settings.speed_store_url is not None
    layout = Layout.of(settings)
    engine = make_engine(settings.speed_store_url)
    try:
        previous = layout.read_current()
        if previous and previous.version == version:  # a retry after a successful flip
            report = stored_report(engine, version)
            if report is not None:
                mark_published(engine, version, previous.published_at_ms)
                return report
            previous = None  # flipped before runs were recorded first: nothing to go by
        before = view_totals(layout, previous.version)[GLOBAL_MINUTE.name] if previous else (0, 0)
        after = view_totals(layout, version)[GLOBAL_MINUTE.name]
        report = record_run(
            engine,
            version,
            read_manifest(layout, version).horizon_ms,
            previous.horizon_ms if previous else 0,
            0,  # pending: set once CURRENT names the version
            after[0],
            before[0],
            after[1],
            before[1],
        )
        floor = rebuild_floor(settings) if rebuild else 0
        try:
            pointer = publish(layout, version, rebuild=rebuild, floor_ms=floor)
        except Exception:
            discard_run(engine, version)
            raise
        mark_published(engine, version, pointer.published_at_ms)
        return report
    finally:
        engine.dispose()


def expire(settings: Settings, horizon_ms: int) -> int:
    """Delete speed rows below ``horizon_ms`` and below every version kept for rollback.

    The floor is recorded durably first (``retention``), so a rollback below it is refused
    rather than served short, and a rollback in flight holds it down.
    """
    assert settings.speed_store_url is not None
    layout = Layout.of(settings)
    below = raise_speed_floor(
        layout, lambda: min(horizon_ms, safe_expiry_horizon(layout, settings.batch_keep_versions))
    )
    engine = make_engine(settings.speed_store_url)
    try:
        return expire_speed_rows(engine, below)
    finally:
        engine.dispose()


def run_once(
    settings: Settings,
    version: str,
    run_id: str,
    horizon_ms: int | None = None,
    rebuild: bool = False,
) -> dict[str, Any]:
    """The whole batch run in one call (used by ``lambda-batch run`` and tests).

    Raises NothingToDo when there is no new sealed bucket or CURRENT is pinned (checked
    before and, as the publish guard, after the recompute), HorizonError for a bad horizon.
    A version built on a base that is no longer CURRENT (a rollback and resume meanwhile) is
    not published: the run goes again from the new CURRENT, under a new version id.
    """
    for attempt in range(STALE_BASE_ATTEMPTS):
        this = version if attempt == 0 else f"{version}-b{attempt}"
        try:
            return _run(settings, this, run_id, horizon_ms, rebuild)
        except StaleBaseError:
            if attempt + 1 == STALE_BASE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


STALE_BASE_ATTEMPTS = 3


def _run(
    settings: Settings, version: str, run_id: str, horizon_ms: int | None, rebuild: bool
) -> dict[str, Any]:
    pinned = pinned_version(settings)
    if pinned:
        raise NothingToDo(f"CURRENT is pinned to {pinned} by a rollback (lambda-batch resume)")
    horizon = choose_horizon(settings, horizon_ms, rebuild)
    if horizon is None:
        raise NothingToDo("the landing watermark has not passed the published horizon")
    recompute(settings, horizon, version, run_id, full=rebuild)
    layout = Layout.of(settings)
    checks = validate_version(layout, version)
    try:
        report = publish_version(settings, version, rebuild)
    except PinnedError as exc:
        raise NothingToDo(str(exc)) from exc
    report["expired_speed_rows"] = expire(settings, horizon)
    report["pruned"] = prune(layout, settings.batch_keep_versions, running=version)
    report["events"] = checks["events"]
    return report
