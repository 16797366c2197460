"""
### lambda_batch — recompute the batch views from the landing zone

Every few minutes (``LAMBDA_BATCH_SCHEDULE_MINUTES``, default 5):

1. **wait_for_sealed_data** — a reschedule-mode sensor: the landing watermark must pass the
   published horizon. Its XCom is the new horizon *H* (exclusive, ms), chosen and checked by
   ``batch_layer.horizon.choose_horizon``. While a rollback pins ``CURRENT`` the run is
   skipped (logged): nothing is published over the operator's choice until
   ``lambda-batch resume``.
2. **compact_landing** — sealed buckets below *H* are rewritten as one file per (bucket,
   partition); superseded small files are deleted once no kept version or running job needs
   them (``batch_layer.compaction``). Idempotent: a retry finds nothing left to do.
3. **name_version** — a version id, fixed for the run so retries rewrite the same version.
4. **recompute** — ``spark-submit`` of ``batch_layer/spark_job.py``, incremental: the landed
   buckets in [H_prev, H), deduplicated against the published version's dedup index, added
   to the event-time partitions (hours; days for a view with no dimension) of every view they
   touch; a staged version whose manifest names its new files and the published version's
   files of the other partitions.
5. **validate** — the manifest reconciles (input - removed = every view's total count).
6. **publish** — flips ``CURRENT`` atomically (skipped, and logged, if a rollback pinned it
   meanwhile or CURRENT is no longer the version this run built on — the next run builds on
   the new one; refused if the horizon went stale); emits an event on the ``lambda-batch-views``
   asset carrying the version, horizon and increment (buckets, events, partitions touched;
   Assets view), and records the run.
7. **expire_speed_rows** — deletes speed rows with ingest bucket < H (cleanup only).
8. **report** — logs the drift between speed and batch for the absorbed buckets; prunes old
   versions.

The logic lives in ``batch_layer``; this file only wires it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, PokeReturnValue, dag, task

from batch_layer.submit import spark_submit_operator, yield_cpu
from lambda_contracts.settings import get_settings

BATCH_VIEWS = Asset("lambda-batch-views", uri="file:///lambda/batch/CURRENT")
SETTINGS = get_settings()
DEFAULT_ARGS = {
    "on_execute_callback": yield_cpu,
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def increment_summary(version: str) -> dict[str, Any]:
    """What the run added (mode, buckets, events, partitions touched), from its manifest."""
    from batch_layer.catalog import read_manifest
    from lambda_contracts.layout import Layout

    manifest = read_manifest(Layout.of(get_settings()), version)
    keep = {
        *("from_ms", "buckets", "files", "input_records", "events"),
        *("days_touched", "hours_touched", "partitions_touched", "partitions"),
    }
    increment = manifest.increment.model_dump(include=keep) if manifest.increment else {}
    return {"mode": manifest.mode, **increment}


def declared_view_builds(version: str) -> list[dict[str, Any]]:
    """Each declared view version the run holds and its build state, printed to the task's log
    (the Airflow UI shows builds there, in the XCom and in the asset event). The version is
    published already: a registry that cannot be read is said, and fails nothing."""
    from batch_layer.build_report import builds_of, describe

    try:
        builds = builds_of(get_settings(), version)
    except Exception as exc:
        print(f"declared views' build states not read: {exc!r}")
        return []
    for build in builds:
        print(describe(build))
    return builds


@dag(
    dag_id="lambda_batch",
    schedule=timedelta(minutes=SETTINGS.batch_schedule_minutes),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lambda", "batch"],
    doc_md=__doc__,
)
def lambda_batch() -> None:
    @task.sensor(poke_interval=20, timeout=timedelta(hours=2), mode="reschedule")
    def wait_for_sealed_data() -> PokeReturnValue:
        from airflow.sdk.exceptions import AirflowSkipException

        from batch_layer.horizon import choose_horizon
        from batch_layer.pipeline import pinned_version

        settings = get_settings()
        pinned = pinned_version(settings)
        if pinned:
            print(f"CURRENT is pinned to {pinned} by a rollback: skipping (lambda-batch resume)")
            raise AirflowSkipException(f"CURRENT is pinned to {pinned}")
        horizon = choose_horizon(settings)
        return PokeReturnValue(is_done=horizon is not None, xcom_value=horizon)

    @task
    def name_version(run_id: str | None = None) -> str:
        from batch_layer.versions import new_version_id

        return new_version_id(run_id or "run")

    @task
    def compact_landing(horizon_ms: int) -> dict[str, Any]:
        from batch_layer.compaction import compact
        from lambda_contracts.layout import Layout

        done = compact(Layout.of(get_settings()), below_ms=int(horizon_ms))
        print(
            f"compacted {done.buckets} sealed buckets: {done.files_before} files -> "
            f"{done.files_after}; deleted {done.deleted} superseded, kept {done.kept_for_readers}"
        )
        return {"files_before": done.files_before, "files_after": done.files_after}

    horizon = wait_for_sealed_data()
    compacted = compact_landing(horizon)
    version = name_version()

    recompute = spark_submit_operator(
        "recompute",
        "lambda-batch",
        horizon="{{ ti.xcom_pull(task_ids='wait_for_sealed_data') }}",
        version="{{ ti.xcom_pull(task_ids='name_version') }}",
        settings=SETTINGS,
    )

    @task
    def validate(version: str) -> dict[str, Any]:
        from batch_layer.validate import validate_version
        from lambda_contracts.layout import Layout

        return validate_version(Layout.of(get_settings()), version)

    @task(outlets=[BATCH_VIEWS])
    def publish(version: str, checks: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from batch_layer.pipeline import publish_version
        from batch_layer.versions import PinnedError, StaleBaseError
        from lambda_contracts.buckets import ms_to_iso

        try:
            report = publish_version(get_settings(), version)
        except PinnedError as exc:
            print(f"not publishing {version}: {exc} (lambda-batch resume to publish again)")
            raise AirflowSkipException(str(exc)) from exc
        except StaleBaseError as exc:  # a retry would fail alike: the next run rebuilds on it
            print(f"not publishing {version}: {exc}")
            raise AirflowSkipException(str(exc)) from exc
        horizon_iso = ms_to_iso(report["horizon_ms"])
        increment = increment_summary(version)
        print(f"published {version}: horizon {horizon_iso}, {checks['events']} events")
        print(f"increment: {increment}")
        builds = declared_view_builds(version)
        if outlet_events is not None:  # the asset event shows version, horizon and increment
            outlet_events[BATCH_VIEWS].extra = {
                "version": version,
                "horizon_ms": report["horizon_ms"],
                "horizon": horizon_iso,
                "events": checks["events"],
                "increment": increment,
                "declared_views": builds,
            }
        return {**report, "increment": increment, "declared_views": builds}

    @task
    def expire_speed_rows(report: dict[str, Any]) -> int:
        from batch_layer.pipeline import expire

        return expire(get_settings(), report["horizon_ms"])

    @task
    def report(report: dict[str, Any], expired: int) -> dict[str, Any]:
        from batch_layer.versions import prune
        from lambda_contracts.layout import Layout

        settings = get_settings()
        pruned = prune(Layout.of(settings), settings.batch_keep_versions)
        print(
            f"drift for buckets [{report['previous_horizon_ms']}, {report['horizon_ms']}): "
            f"{report['drift_events']} events, {report['drift_cents']} cents "
            f"(batch {report['absorbed_events_batch']}, speed {report['absorbed_events_speed']}); "
            f"expired {expired} speed rows; pruned {pruned}"
        )
        return {**report, "expired_speed_rows": expired, "pruned": pruned}

    checks = validate(version)
    [compacted, version] >> recompute >> checks
    published = publish(version, checks)
    report(published, expire_speed_rows(published))


lambda_batch()
